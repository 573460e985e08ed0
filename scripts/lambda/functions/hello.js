// The walkthrough's function: says hello and reports what it was given.
exports.handler = async (event) => ({
  statusCode: 200,
  headers: { 'content-type': 'application/json', 'x-from': 'function' },
  body: JSON.stringify({
    message: 'Hello from the function',
    version: event.version || '1.0',
    path: event.raw_path || event.path,
    method: event.method,
    sourceVpcArn: event.requestContext ? event.requestContext.identity.sourceVpcArn : null,
    targetGroupArn: event.requestContext ? event.requestContext.targetGroupArn : null,
    identity: event.requestContext ? event.requestContext.identity : null,
    bodyLength: (event.body || '').length,
  }),
});
