// A small Lambda Invoke API for the tests, as local Lambda emulators expose
// it: POST /2015-03-31/functions/NAME/invocations runs
// FUNCTIONS_DIR/NAME.js's `handler(event)` and answers its JSON. A thrown
// error answers 200 with X-Amz-Function-Error, as AWS does.
//
// usage: node runner.js FUNCTIONS_DIR   (prints "listening PORT" on 127.0.0.1)
'use strict';
const http = require('http');
const path = require('path');

const dir = process.argv[2];
const server = http.createServer((req, res) => {
  const m = req.url.match(/^\/2015-03-31\/functions\/([^/?]+)\/invocations(\?.*)?$/);
  if (req.method !== 'POST' || !m) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ message: `no route ${req.method} ${req.url}` }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let event;
    try {
      event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: `payload is not JSON: ${e}` }));
      return;
    }
    const name = decodeURIComponent(m[1]);
    let handler;
    try {
      handler = require(path.join(dir, `${path.basename(name)}.js`)).handler;
    } catch (e) {
      res.writeHead(404, { 'x-amzn-errortype': 'ResourceNotFoundException', 'content-type': 'application/json' });
      res.end(JSON.stringify({ Type: 'User', message: `Function not found: ${name}` }));
      return;
    }
    try {
      const out = await handler(event);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    } catch (e) {
      res.writeHead(200, { 'x-amz-function-error': 'Unhandled', 'content-type': 'application/json' });
      res.end(JSON.stringify({ errorType: 'Error', errorMessage: String(e) }));
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
