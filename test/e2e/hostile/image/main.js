// A hostile algorithm: each mode is one attack on the site that runs it (issue 14). Plain Node,
// no dependencies; what it managed to do goes to /pht/output/report.json (when it still can) and
// to its log, so the tests can check the site held.
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const config = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
const out = process.env.PHT_OUTPUT_DIR;
const report = (value) => {
  console.log(JSON.stringify(value));
  try {
    fs.writeFileSync(path.join(out, 'report.json'), JSON.stringify(value));
  } catch (e) {
    console.log(`could not write the report: ${e.code}`);
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A DNS query for `name` (type A) as a UDP packet. */
function dnsQuery(name) {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

function sendDns(host, name) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const timer = setTimeout(() => done('no answer'), 2000);
    const done = (result) => {
      clearTimeout(timer);
      socket.close();
      resolve(result);
    };
    socket.on('message', () => done('answered'));
    socket.on('error', (e) => done(e.code));
    socket.send(dnsQuery(name), 53, host);
  });
}

async function sparql(body, { readBytes = Infinity } = {}) {
  const res = await fetch(process.env.SPARQL_ENDPOINT, {
    method: 'POST',
    headers: { 'content-type': 'application/sparql-query' },
    body,
  });
  if (readBytes === Infinity) return { status: res.status, body: await res.text() };
  const reader = res.body.getReader();
  let read = 0;
  while (read < readBytes) {
    const { value, done } = await reader.read();
    if (done) break;
    read += value.length;
  }
  // Hang up in the middle of the answer.
  await reader.cancel();
  return { status: res.status, read };
}

async function main() {
  switch (config.mode) {
    case 'deep-path': {
      // 16 nested folders of 255-character names, then a file: the host path is longer than PATH_MAX.
      let dir = out;
      const segment = 'd'.repeat(255);
      process.chdir(out);
      for (let i = 0; i < 16; i++) {
        fs.mkdirSync(segment);
        process.chdir(segment);
      }
      fs.writeFileSync('deep.txt', 'too deep to send');
      process.chdir('/');
      fs.writeFileSync(path.join(dir, 'result.json'), JSON.stringify({ ok: true }));
      console.log('wrote a path longer than PATH_MAX');
      return 0;
    }
    case 'fill-progress': {
      // 500 MB into the progress folder as fast as possible.
      const chunk = Buffer.alloc(1024 * 1024, 120);
      let written = 0;
      try {
        for (let i = 0; i < 500; i++) {
          fs.appendFileSync(path.join(path.dirname(process.env.PHT_PROGRESS_FILE), 'junk.bin'), chunk);
          written += chunk.length;
        }
      } catch (e) {
        console.log(`stopped after ${written} bytes: ${e.code}`);
      }
      await sleep(config.lingerMs ?? 0);
      return 0;
    }
    case 'many-files': {
      let created = 0;
      let error = null;
      try {
        for (; created < config.files; created++) fs.writeFileSync(path.join(out, `f${created}`), '');
      } catch (e) {
        error = e.code;
      }
      console.log(JSON.stringify({ created, error }));
      await sleep(config.lingerMs ?? 0);
      return 0;
    }
    case 'exec-output': {
      // Plant an executable in the output folder and try to run it.
      const file = path.join(out, 'payload.js');
      fs.writeFileSync(file, '#!/usr/bin/node\nconsole.log("executed")\n');
      fs.chmodSync(file, 0o755);
      let result;
      try {
        result = execFileSync(file).toString().trim();
      } catch (e) {
        result = e.code;
      }
      report({ exec: result });
      return 0;
    }
    case 'connections': {
      // Open as many connections to the gateway as possible and hold them.
      const url = new URL(process.env.SPARQL_ENDPOINT);
      const sockets = [];
      let opened = 0;
      let failed = 0;
      await Promise.all(
        Array.from(
          { length: config.connections },
          () =>
            new Promise((resolve) => {
              const s = net.connect(Number(url.port), url.hostname);
              s.on('connect', () => {
                opened++;
                sockets.push(s);
                resolve();
              });
              s.on('error', () => {
                failed++;
                resolve();
              });
            }),
        ),
      );
      fs.appendFileSync(
        process.env.PHT_PROGRESS_FILE,
        JSON.stringify({ current: 1, total: 2, message: 'holding' }) + '\n',
      );
      await sleep(config.holdMs);
      const stillOpen = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
      report({ opened, failed, stillOpen });
      return 0;
    }
    case 'sparql-hangup': {
      const results = [];
      for (let i = 0; i < config.queries; i++)
        results.push(await sparql(`CONSTRUCT WHERE { ?s ?p ?o } # ${i}`, { readBytes: 10_000 }));
      const service = await sparql('SELECT * WHERE { SERVICE <http://203.0.113.1/sparql> { ?s ?p ?o } }');
      report({ results, service: service.status });
      return 0;
    }
    case 'dns': {
      const name = config.name;
      const system = await require('node:dns')
        .promises.lookup(`system.${name}`)
        .then(
          (r) => r.address,
          (e) => e.code,
        );
      const embedded = await sendDns('127.0.0.11', `embedded.${name}`);
      const direct = await sendDns(config.gatewayIp, `direct.${name}`);
      report({ system, embedded, direct });
      return 0;
    }
    default:
      console.error(`unknown mode ${config.mode}`);
      return 64;
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(70);
  },
);
