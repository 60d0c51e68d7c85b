'use strict';
// Tiny shared argument parsing for the peer servers: `--port P` (and `--port=P`).

function portArg(argv, fallback) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let value;
    if (arg === '--port') value = argv[i + 1];
    else if (arg.startsWith('--port=')) value = arg.slice('--port='.length);
    else continue;
    const port = Number(value);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      console.error(`invalid --port: ${value}`);
      process.exit(2);
    }
    return port;
  }
  return fallback;
}

module.exports = { portArg };
