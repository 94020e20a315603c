// Entry point for `node master`: runs the compiled registry (npm install builds it into dist/).
require('../dist/master/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
