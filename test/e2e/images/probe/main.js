// A test algorithm whose behaviour is chosen by its config ("mode"): it exercises every path of
// the container contract and every way a run can end. Plain Node, no dependencies.
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const config = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8'));
const out = process.env.PHT_OUTPUT_DIR;
const progress = (current, total, message) =>
  fs.appendFileSync(process.env.PHT_PROGRESS_FILE, JSON.stringify({ current, total, message }) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tryConnect(host, port, timeoutMs = 1500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (result) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done('timeout'));
    socket.on('connect', () => done('connected'));
    socket.on('error', (e) => done(e.code || 'error'));
  });
}

async function sparql(body, contentType) {
  try {
    const res = await fetch(process.env.SPARQL_ENDPOINT, {
      method: 'POST',
      headers: { 'content-type': contentType, accept: 'application/sparql-results+json' },
      body,
      signal: AbortSignal.timeout(5000),
    });
    return { status: res.status, body: await res.text() };
  } catch (e) {
    return { status: 0, body: String(e.cause?.code || e.message) };
  }
}

async function main() {
  console.log(`probe starting in mode ${config.mode}`);
  switch (config.mode) {
    case 'ok': {
      progress(1, 2, 'halfway');
      console.log('stdout line');
      console.error('stderr line');
      fs.writeFileSync(
        path.join(out, 'result.json'),
        JSON.stringify({
          echo: config.echo ?? null,
          env: {
            taskId: process.env.PHT_TASK_ID,
            runId: process.env.PHT_RUN_ID,
            configFile: process.env.PHT_CONFIG_FILE,
            outputDir: out,
            progressFile: process.env.PHT_PROGRESS_FILE,
            uid: process.getuid(),
            gid: process.getgid(),
          },
        }),
      );
      fs.mkdirSync(path.join(out, 'nested'));
      fs.writeFileSync(path.join(out, 'nested', 'data.csv'), 'a,b\n1,2\n');
      fs.symlinkSync('/etc/passwd', path.join(out, 'link-to-host-file'));
      progress(2, 2, 'done');
      return 0;
    }
    case 'version': {
      fs.writeFileSync(path.join(out, 'version.txt'), fs.readFileSync('/app/version.txt'));
      return 0;
    }
    case 'fail':
      console.error('something went wrong on purpose');
      return 3;
    case 'sleep':
      progress(0, 1, 'sleeping');
      console.log('going to sleep');
      await sleep(config.ms);
      fs.writeFileSync(path.join(out, 'slept.txt'), String(config.ms));
      console.log('woke up');
      return 0;
    case 'big-output': {
      const chunk = Buffer.alloc(1024 * 1024, 120);
      for (let i = 0; i < config.megabytes; i++) fs.appendFileSync(path.join(out, 'big.bin'), chunk);
      console.log('wrote everything');
      await sleep(config.lingerMs ?? 0);
      return 0;
    }
    case 'escape': {
      const attempts = {};
      for (const target of [
        '/escape.txt',
        '/etc/escape.txt',
        '/app/escape.txt',
        config.hostPath,
        process.env.PHT_CONFIG_FILE,
      ]) {
        try {
          fs.writeFileSync(target, 'escaped');
          attempts[target] = 'written';
        } catch (e) {
          attempts[target] = e.code;
        }
      }
      try {
        fs.writeFileSync('/tmp/scratch.txt', 'fine');
        attempts['/tmp/scratch.txt'] = 'written';
      } catch (e) {
        attempts['/tmp/scratch.txt'] = e.code;
      }
      console.log(JSON.stringify(attempts));
      fs.writeFileSync(path.join(out, 'attempts.json'), JSON.stringify(attempts));
      return Object.entries(attempts).some(([p, r]) => r === 'written' && p !== '/tmp/scratch.txt') ? 0 : 2;
    }
    case 'network': {
      const report = {};
      report.select = await sparql(
        'query=' + encodeURIComponent('SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }'),
        'application/x-www-form-urlencoded',
      );
      report.update = await sparql(
        'update=' + encodeURIComponent('INSERT DATA { <urn:a> <urn:b> <urn:c> }'),
        'application/x-www-form-urlencoded',
      );
      report.updateAsQuery = await sparql('INSERT DATA { <urn:a> <urn:b> <urn:c> }', 'application/sparql-query');
      report.connections = {};
      for (const target of config.targets)
        report.connections[`${target.host}:${target.port}`] = await tryConnect(target.host, target.port);
      fs.writeFileSync(path.join(out, 'network.json'), JSON.stringify(report));
      console.log(JSON.stringify(report.connections));
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
