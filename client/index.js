// Entry point for `node client`: runs the compiled site client (npm install builds it into dist/).
require('../dist/client/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    // After a failure (a shutdown past its deadline included) nothing is worth waiting for.
    if (code !== 0) process.exit(code);
    process.exitCode = code;
  });
