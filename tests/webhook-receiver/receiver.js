// A Standard Webhooks receiver for tests/tests/webhooks.rs: verifies every
// delivery with the `standardwebhooks` package and records it.
//
//   node receiver.js CONTROL_FILE RECORD_FILE
//
// Listens on 127.0.0.1 (a free port), prints `listening PORT` once ready.
// CONTROL_FILE (JSON, re-read on every request) says
//   {"secret": "whsec_…", "mode": "ok" | "fail" | "sleep", "sleep_ms": N}
// ok: 204; fail: 500; sleep: wait sleep_ms, then 200. Each verified
// delivery answered 2xx is appended to RECORD_FILE as one JSON line
// {"id", "cursor", "type", "transaction_id", "key_id", "signature"}; a
// delivery that fails verification gets 400 and a line {"error": …}.
"use strict";
const fs = require("fs");
const http = require("http");
const { Webhook } = require("standardwebhooks");

const [controlFile, recordFile] = process.argv.slice(2);
const record = (line) => fs.appendFileSync(recordFile, JSON.stringify(line) + "\n");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let control;
    try {
      control = JSON.parse(fs.readFileSync(controlFile, "utf8"));
    } catch (e) {
      res.writeHead(503).end();
      return;
    }
    let event;
    try {
      event = new Webhook(control.secret).verify(body, req.headers);
    } catch (e) {
      record({ error: String(e && e.message), id: req.headers["webhook-id"] || null });
      res.writeHead(400).end();
      return;
    }
    const line = {
      id: req.headers["webhook-id"],
      cursor: event.data.cursor,
      type: event.type,
      transaction_id: event.data.transaction_id,
      key_id: event.data.key_id,
      signature: event.data.signature,
      data: event.data,
    };
    if (control.mode === "fail") {
      res.writeHead(500).end("failing on purpose");
    } else if (control.mode === "sleep") {
      setTimeout(() => {
        record(line);
        res.writeHead(200).end();
      }, control.sleep_ms || 15000);
    } else {
      record(line);
      res.writeHead(204).end();
    }
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
