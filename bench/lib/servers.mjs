// The servers of the Postgres and S3 rows (scripts/ensure-postgres.sh, scripts/ensure-s3.sh) and
// the untimed housekeeping around them: a fresh schema / bucket per store, dropped on close.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

export const PG = { host: '127.0.0.1', port: 5432, database: 'persist', user: 'persist', password: 'persist' }
/** A fresh object each time: the AWS SDK writes into the credentials object it is given ($source). */
export const s3Config = () => ({
  endpoint: 'http://127.0.0.1:9000',
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  forcePathStyle: true,
})
export const S3 = s3Config()

let seq = 0
/** A name no other run (process) or store of this run uses: `bench_<pid>_<n>_<random>`. */
export function freshName(sep = '_') {
  return ['bench', process.pid, ++seq, Math.random().toString(36).slice(2, 8)].join(sep)
}

/** Runs fn(client) on one short-lived connection (not the pool being measured). */
export async function pgAdmin(fn) {
  const pg = require('pg')
  const c = new pg.Client({ ...PG, connectionTimeoutMillis: 5000 })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}
export const dropSchema = (schema) => pgAdmin((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))

/** An S3 client for the rows (aws-sdk-s3) and for creating / emptying buckets. */
export async function s3Client(extra = {}) {
  const { S3Client } = await import('@aws-sdk/client-s3')
  return new S3Client({ ...s3Config(), ...extra })
}
export async function createBucket(client, bucket) {
  const { CreateBucketCommand } = await import('@aws-sdk/client-s3')
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
}
/** Deletes every object (and unfinished multipart upload) of the bucket, then the bucket: moto keeps it all in RAM. */
export async function dropBucket(client, bucket) {
  const s3 = await import('@aws-sdk/client-s3')
  let token
  do {
    const page = await client.send(new s3.ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }))
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key }))
    if (keys.length) await client.send(new s3.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }))
    token = page.IsTruncated ? page.NextContinuationToken : undefined
  } while (token)
  const ups = await client.send(new s3.ListMultipartUploadsCommand({ Bucket: bucket }))
  for (const u of ups.Uploads ?? []) await client.send(new s3.AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }))
  await client.send(new s3.DeleteBucketCommand({ Bucket: bucket }))
}
