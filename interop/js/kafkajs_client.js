#!/usr/bin/env node
// kafkajs, driven by the interop tests: one JSON command on stdin, one JSON answer on stdout.
//
//   {"op": "produce", "brokers": [...], "topic": "t", "sends": [{"partition": 0,
//     "records": [{"key": b64|null, "value": b64|null, "headers": [[name, b64|null]],
//     "timestamp": ms|null}]}], "compression": "none|gzip|snappy|lz4|zstd",
//     "acks": -1|0|1, "idempotent": bool}
//       -> {"ok": true, "result": [[{partition, errorCode, baseOffset}], ...]} (one per send)
//   {"op": "fetch", "brokers": [...], "topic": "t", "partition": 0, "offset": 0,
//     "count": n, "timeoutMs": ms, "isolationLevel": 0|1 (default 1, read_committed)}
//       -> {"ok": true, "result": [{"offset", "timestamp", "key", "value", "headers"}]}
//   {"op": "admin", "brokers": [...], "calls": [{"method": "createTopics", "args": [...]}]}
//       -> {"ok": true, "result": [<each call's return value>]}
//   {"op": "transaction", "brokers": [...], "transactionalId": "t", "topic": "t",
//     "transactions": [{"partition": 0, "records": [...], "end": "commit|abort",
//     "sendOffsets": null | {"consumerGroupId": "g", "topics": [...]}}]}
//       -> {"ok": true, "result": [[{partition, errorCode, baseOffset}], ...]} (one per
//          transaction, all by one producer: idempotent, one request in flight)
//
// Errors come back as {"ok": false, "error": {name, type, message, retriable, ...}} so the
// tests can assert on the Kafka error kafkajs surfaced.  Logs go to stderr only.
//
// kafkajs has no consumer without a consumer group, and the broker has no groups yet
// (issue 5), so "fetch" sends kafkajs's own Fetch request through its own broker connection
// and decodes the records with its own RecordBatch decoder and codecs: the same code its
// consumer runs, minus the group protocol.
'use strict'

const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs')
const Batch = require('kafkajs/src/consumer/batch')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const { ZstdCodec } = require('zstd-codec')

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

// kafkajs ships gzip only; snappy, lz4 and zstd are plug-ins, as its documentation says.
function registerCodecs(zstd) {
  CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = () => ({
    async compress(encoder) {
      return Buffer.from(lz4.compress(encoder.buffer))
    },
    async decompress(buffer) {
      return lz4DecompressFrame(buffer)
    },
  })
  CompressionCodecs[CompressionTypes.ZSTD] = () => ({
    async compress(encoder) {
      return Buffer.from(new zstd.Simple().compress(encoder.buffer))
    },
    async decompress(buffer) {
      // Streaming: producers may omit the frame content size that Simple requires.
      const out = new zstd.Streaming().decompress(buffer)
      if (out == null) throw new Error('zstd: cannot decompress')
      return Buffer.from(out)
    },
  })
}

// An LZ4 frame reader (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md) around
// lz4js's block decoder: lz4js's own frame reader skips a block checksum before the block
// instead of after it, and so garbles frames with checksummed blocks (aiokafka sends those).
function lz4DecompressFrame(frame) {
  if (frame.readUInt32LE(0) !== 0x184d2204) throw new Error('lz4: bad frame magic')
  const flags = frame[4]
  const blockChecksum = (flags & 0x10) !== 0
  const contentSize = (flags & 0x08) !== 0
  const dictionary = (flags & 0x01) !== 0
  const maxBlock = 1 << (8 + 2 * ((frame[5] >> 4) & 0x7)) // BD: 4 -> 64 KiB ... 7 -> 4 MiB
  const start = 6 + (contentSize ? 8 : 0) + (dictionary ? 4 : 0) + 1 // FLG BD [size] [dict] HC
  const blocks = []
  for (let at = start; ; ) {
    const word = frame.readUInt32LE(at)
    if (word === 0) break // EndMark; a content checksum may follow
    const size = word & 0x7fffffff
    blocks.push({ at: at + 4, size, stored: (word & 0x80000000) !== 0 })
    at += 4 + size + (blockChecksum ? 4 : 0)
  }
  // One output buffer: linked blocks may copy from the blocks before them.
  const out = new Uint8Array(blocks.length * maxBlock)
  let end = 0
  for (const block of blocks) {
    if (block.stored) {
      out.set(frame.subarray(block.at, block.at + block.size), end)
      end += block.size
    } else {
      end = lz4.decompressBlock(frame, out, block.at, block.size, end)
    }
  }
  return Buffer.from(out.buffer, 0, end)
}

const stderrLogger = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[kafkajs ${level} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

function client(command) {
  return new Kafka({
    clientId: 'kafkacompat-interop',
    brokers: command.brokers,
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    connectionTimeout: 5000,
    requestTimeout: command.requestTimeoutMs || 10000,
    retry: { retries: command.retries ?? 3, initialRetryTime: 100, maxRetryTime: 1000 },
  })
}

const b64 = buffer => (buffer == null ? null : Buffer.from(buffer).toString('base64'))
const unb64 = text => (text == null ? null : Buffer.from(text, 'base64'))

function toMessage(record) {
  // kafkajs's headers are an object: repeated names become an array of values.
  const headers = {}
  for (const [name, value] of record.headers || []) {
    const buffer = unb64(value)
    if (!(name in headers)) headers[name] = buffer
    else if (Array.isArray(headers[name])) headers[name].push(buffer)
    else headers[name] = [headers[name], buffer]
  }
  const message = { key: unb64(record.key), value: unb64(record.value), headers }
  if (record.timestamp != null) message.timestamp = String(record.timestamp)
  return message
}

async function produce(command) {
  const producer = client(command).producer({
    idempotent: Boolean(command.idempotent),
    maxInFlightRequests: command.idempotent ? 1 : undefined,
    allowAutoTopicCreation: true,
  })
  await producer.connect()
  try {
    const results = []
    for (const send of command.sends) {
      const metadata = await producer.send({
        topic: command.topic,
        acks: command.acks ?? -1,
        compression: COMPRESSION[command.compression || 'none'],
        timeout: 10000,
        messages: send.records.map(r => ({ ...toMessage(r), partition: send.partition ?? 0 })),
      })
      results.push(metadata)
    }
    return results
  } finally {
    await producer.disconnect()
  }
}

async function transaction(command) {
  // kafkajs insists on idempotence and one request in flight for a transactional producer.
  const producer = client(command).producer({
    transactionalId: command.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: command.transactionTimeoutMs || 60000,
  })
  await producer.connect()
  try {
    const results = []
    for (const spec of command.transactions) {
      const txn = await producer.transaction()
      try {
        results.push(
          await txn.send({
            topic: command.topic,
            messages: spec.records.map(r => ({ ...toMessage(r), partition: spec.partition ?? 0 })),
          })
        )
        if (spec.sendOffsets) await txn.sendOffsets(spec.sendOffsets)
      } catch (error) {
        await txn.abort()
        throw error
      }
      if (spec.end === 'abort') await txn.abort()
      else await txn.commit()
    }
    return results
  } finally {
    await producer.disconnect()
  }
}

function clusterOf(kafka) {
  const create = Object.getOwnPropertySymbols(kafka).find(
    s => s.description === 'private:Kafka:createCluster'
  )
  if (create === undefined) throw new Error('kafkajs internals changed: no createCluster')
  return kafka[create]({ allowAutoTopicCreation: false })
}

function headersOut(headers) {
  const out = []
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) out.push([name, b64(v)])
  }
  return out
}

async function fetchRecords(command) {
  const cluster = clusterOf(client(command))
  await cluster.connect()
  try {
    await cluster.addTargetTopic(command.topic)
    await cluster.refreshMetadata()
    const leaders = cluster.findLeaderForPartitions(command.topic, [command.partition])
    const nodeId = Object.keys(leaders)[0]
    const broker = await cluster.findBroker({ nodeId })
    const records = []
    let offset = BigInt(command.offset)
    const deadline = Date.now() + (command.timeoutMs || 10000)
    while (records.length < command.count && Date.now() < deadline) {
      const response = await broker.fetch({
        replicaId: -1,
        isolationLevel: command.isolationLevel ?? 1,
        maxWaitTime: 500,
        minBytes: 1,
        maxBytes: 64 * 1024 * 1024,
        topics: [
          {
            topic: command.topic,
            partitions: [
              { partition: command.partition, fetchOffset: offset.toString(), maxBytes: 64 * 1024 * 1024 },
            ],
          },
        ],
      })
      const partition = response.responses[0].partitions[0]
      if (partition.errorCode) throw new Error(`fetch error code ${partition.errorCode}`)
      // A batch holding only records before the fetch offset (the rest compacted away):
      // kafkajs's consumer then moves on by one offset, through its own Batch class.
      const batch = new Batch(command.topic, offset.toString(), partition)
      if (batch.isEmptyDueToLogCompactedMessages()) {
        offset = BigInt(batch.lastOffset()) + 1n
        continue
      }
      // The Batch drops control records and, under read_committed, the records of aborted
      // transactions (the response's abortedTransactions), as kafkajs's consumer does; the
      // offset moves past whatever it dropped.
      const kept = new Set(batch.messages.map(message => String(message.offset)))
      for (const message of partition.messages) {
        if (BigInt(message.offset) < offset) continue
        offset = BigInt(message.offset) + 1n
        if (!kept.has(String(message.offset))) continue
        records.push({
          offset: Number(message.offset),
          timestamp: Number(message.timestamp),
          key: b64(message.key),
          value: b64(message.value),
          headers: headersOut(message.headers || {}),
        })
      }
    }
    return records.slice(0, command.count)
  } finally {
    await cluster.disconnect()
  }
}

async function admin(command) {
  const adminClient = client(command).admin()
  await adminClient.connect()
  try {
    const results = []
    for (const call of command.calls) {
      results.push(await adminClient[call.method](...(call.args || [])))
    }
    return results
  } finally {
    await adminClient.disconnect()
  }
}

const OPS = { produce, fetch: fetchRecords, admin, transaction }

function describeError(error) {
  const out = {
    name: error.name,
    message: error.message,
    type: error.type,
    code: error.code,
    retriable: error.retriable,
  }
  if (Array.isArray(error.errors)) out.errors = error.errors.map(describeError) // aggregates
  if (error.cause) out.cause = describeError(error.cause)
  if (error.originalError) out.originalError = describeError(error.originalError)
  return out
}

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = []
    process.stdin.on('data', chunk => chunks.push(chunk))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}

async function main() {
  const command = JSON.parse(await readStdin())
  await new Promise(resolve => ZstdCodec.run(zstd => resolve(registerCodecs(zstd))))
  let answer
  try {
    answer = { ok: true, result: await OPS[command.op](command) }
  } catch (error) {
    answer = { ok: false, error: describeError(error) }
  }
  // Exit only once the answer is flushed: stdout is an asynchronous pipe.
  const text = JSON.stringify(answer, (key, value) =>
    typeof value === 'bigint'
      ? value.toString()
      : value && value.type === 'Buffer' && Array.isArray(value.data) // Buffer#toJSON
      ? b64(value.data)
      : value
  )
  process.stdout.write(text + '\n', () => process.exit(0))
}

main().catch(error => {
  process.stderr.write(`${error.stack}\n`)
  process.exit(1)
})
