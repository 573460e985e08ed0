// A function that fails: its caller must get 502, not a hang.
exports.handler = async () => {
  throw new Error('boom');
};
