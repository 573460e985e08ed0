// A function whose answer is over Lattice's 6 MB limit: its caller gets 502.
exports.handler = async () => ({ statusCode: 200, body: 'x'.repeat(7 * 1024 * 1024) });
