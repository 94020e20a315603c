// Entry point for `node client`: runs the compiled site client (npm install builds it into dist/).
require('../dist/client/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
