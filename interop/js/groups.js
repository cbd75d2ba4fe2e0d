#!/usr/bin/env node
// One kafkajs consumer-group member for the interop group tests (interop/group_clients.py):
//
//   node groups.js '{"client": "kafkajs", "bootstrap": "host:port", "group": "g",
//                    "topics": ["t"], "client_id": "m1", "auto_offset_reset": "earliest",
//                    "session_timeout_ms": 2500, "heartbeat_interval_ms": 250,
//                    "rebalance_timeout_ms": 8000, "group_instance_id": null, "assignor": null}'
//
// It subscribes, then reads and commits after processing (each batch's next offset,
// synchronously) until {"cmd": "close"} arrives on stdin or stdin ends, then disconnects
// (which sends LeaveGroup) and exits 0.  It reports on stdout, one JSON object per line, the
// events group_clients.py documents.  kafkajs has no revocation callback: every group join
// reports the member's whole assignment ("incremental": false), and its generation is seen
// only in its heartbeat events.  kafkajs 2.x has no static membership (group.instance.id) and
// no cooperative assignor, so those settings are refused.
//
//   node groups.js admin '{"brokers": [...], "calls": [{"method": "deleteGroups", "args": [...]}]}'
//
// runs kafkajs admin calls in order and prints {"ok": true, "result": [...]} or
// {"ok": false, "error": {...}}: unlike kafkajs_client.js's "admin", the error keeps the
// per-group error codes of a KafkaJSDeleteGroupsError.
'use strict'

const readline = require('readline')
const { Kafka, logLevel } = require('kafkajs')

const ADMIN = process.argv[2] === 'admin'
const spec = JSON.parse(process.argv[ADMIN ? 3 : 2])

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

function finish(code) {
  // stdout is an asynchronous pipe: exit once what was written is flushed.
  process.stdout.write('', () => process.exit(code))
}

const stderrLogger = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[kafkajs ${level} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

function partitionsOf(memberAssignment) {
  const out = []
  for (const [topic, partitions] of Object.entries(memberAssignment || {})) {
    for (const partition of partitions) out.push([topic, partition])
  }
  return out
}

async function main() {
  if (spec.group_instance_id != null) throw new Error('kafkajs has no static membership')
  if (spec.assignor != null && spec.assignor !== 'roundrobin') {
    throw new Error(`kafkajs has no ${spec.assignor} assignor`)
  }
  const retry = { initialRetryTime: 100, maxRetryTime: 1000, retries: 30 }
  const kafka = new Kafka({
    clientId: spec.client_id,
    brokers: [spec.bootstrap],
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry,
  })
  const consumer = kafka.consumer({
    groupId: spec.group,
    sessionTimeout: spec.session_timeout_ms,
    rebalanceTimeout: spec.rebalance_timeout_ms,
    heartbeatInterval: spec.heartbeat_interval_ms,
    maxWaitTimeInMs: 100,
    allowAutoTopicCreation: false,
    retry,
  })
  const { GROUP_JOIN, HEARTBEAT, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, ({ payload }) =>
    emit('assigned', {
      partitions: partitionsOf(payload.memberAssignment),
      incremental: false,
      generation: null,
      member_id: payload.memberId,
      leader: payload.isLeader,
    })
  )
  let generation = null
  consumer.on(HEARTBEAT, ({ payload }) => {
    if (payload.groupGenerationId !== generation) {
      generation = payload.groupGenerationId
      emit('generation', { generation })
    }
  })
  consumer.on(CRASH, ({ payload }) =>
    emit('error', {
      message: String(payload.error && payload.error.message),
      code: null,
      restart: payload.restart,
    })
  )

  let requestStop
  const stopped = new Promise(resolve => (requestStop = resolve))
  const input = readline.createInterface({ input: process.stdin })
  input.on('line', line => {
    try {
      if (JSON.parse(line).cmd === 'close') requestStop()
    } catch (error) {
      // not a command
    }
  })
  input.on('close', () => requestStop())

  await consumer.connect()
  await consumer.subscribe({
    topics: spec.topics,
    fromBeginning: spec.auto_offset_reset === 'earliest',
  })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch }) => {
      if (batch.isEmpty()) return
      const records = batch.messages.map(m => [
        batch.topic,
        batch.partition,
        Number(m.offset),
        m.value == null ? null : m.value.toString('utf8'),
      ])
      emit('records', { records })
      const next = Number(batch.messages[batch.messages.length - 1].offset) + 1
      try {
        await consumer.commitOffsets([
          { topic: batch.topic, partition: batch.partition, offset: String(next) },
        ])
        emit('committed', { offsets: [[batch.topic, batch.partition, next]] })
      } catch (error) {
        emit('commit_failed', { message: String(error && error.message), code: error.code ?? null })
      }
    },
  })

  await stopped
  const timer = setTimeout(() => {
    emit('fatal', { message: 'disconnect took over 10 s' })
    finish(1)
  }, 10000)
  await consumer.disconnect()
  clearTimeout(timer)
  emit('closed')
  finish(0)
}

function describeError(error) {
  if (error == null || typeof error !== 'object') return { message: String(error) }
  const out = { name: error.name, message: error.message, type: error.type, code: error.code }
  if (Array.isArray(error.groups)) {
    out.groups = error.groups.map(({ groupId, errorCode }) => ({ groupId, errorCode }))
  }
  if (Array.isArray(error.errors)) out.errors = error.errors.map(describeError)
  if (error.cause) out.cause = describeError(error.cause)
  if (error.originalError) out.originalError = describeError(error.originalError)
  return out
}

async function admin() {
  const client = new Kafka({
    clientId: 'kafkacompat-interop-groups',
    brokers: spec.brokers,
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 3 },
  }).admin()
  await client.connect()
  let answer
  try {
    const results = []
    for (const call of spec.calls) results.push(await client[call.method](...(call.args || [])))
    answer = { ok: true, result: results }
  } catch (error) {
    answer = { ok: false, error: describeError(error) }
  } finally {
    await client.disconnect()
  }
  const text = JSON.stringify(answer, (key, value) =>
    value && value.type === 'Buffer' && Array.isArray(value.data) // Buffer#toJSON
      ? Buffer.from(value.data).toString('base64')
      : value
  )
  process.stdout.write(text + '\n', () => process.exit(0))
}

;(ADMIN ? admin() : main()).catch(error => {
  process.stderr.write(`${error.stack}\n`)
  emit('fatal', { message: String(error && error.message) })
  finish(1)
})
