// kinesalite-server.js starts kinesalite (a Kinesis-compatible server) on
// 127.0.0.1: its own CLI listens on every interface. The port it got is
// written to the file named by the second argument once it listens. With a
// data directory it keeps streams in LevelDB there (a restart finds them
// again); without, in memory.
//
//   node scripts/kinesalite-server.js <node_modules dir> <port file> [port] [data dir]
'use strict'
const path = require('path')
const fs = require('fs')

const [modules, portFile, port, dataDir] = process.argv.slice(2)
if (!modules || !portFile) {
  console.error('usage: kinesalite-server.js <node_modules dir> <port file> [port] [data dir]')
  process.exit(2)
}
const kinesalite = require(path.join(modules, 'kinesalite'))
// Streams become ACTIVE (and splits and merges finish) quickly, so tests
// need not wait the default half second for each; the shard limit is raised
// so that several test streams fit in one server.
const server = kinesalite({ createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50, shardLimit: 200, path: dataDir || undefined })
server.listen(Number(port || 0), '127.0.0.1', () => {
  const a = server.address()
  fs.writeFileSync(portFile + '.tmp', String(a.port))
  fs.renameSync(portFile + '.tmp', portFile)
  console.log('kinesalite listening at http://%s:%d', a.address, a.port)
})
// kinesalite throws from a request's 'error' event, so one client that
// drops its connection mid-request (a SIGKILLed ingester, a client timeout)
// would take the whole server down; a real Kinesis endpoint only loses that
// request. Those errors are logged and the server keeps serving; any other
// uncaught error still ends it.
const dropped = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE'])
process.on('uncaughtException', (err) => {
  if (err && dropped.has(err.code)) {
    console.error('kinesalite: a client dropped its request: %s', err.message)
    return
  }
  console.error(err)
  process.exit(1)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
