// Entry point for `node fileservice`: runs the compiled file service (npm install builds it into dist/).
require('../dist/fileservice/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
