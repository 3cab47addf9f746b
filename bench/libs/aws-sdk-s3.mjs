// @aws-sdk/client-s3 (pinned, bench/package.json) on the same moto server as persist-s3 (issue 6):
// path-style, us-east-1, credentials test/test, a bucket created per store (emptied and deleted on
// close), the SDK's defaults except maxSockets 64 (the phases keep 64 requests in flight; the SDK's
// default of 50 would queue them and warn).
//   blobs: PutObject / GetObject (Body.transformToByteArray; NoSuchKey -> undefined) /
//     ListObjectsV2 pages of 1,000 (blob-list: keys only) / for blob-list-info, what our BlobInfo
//     holds: each ListObjectsV2 page, then HeadObject per key (64 in flight, in key order; a key
//     deleted meanwhile is skipped) for content type and metadata; the stream body through @aws-sdk/lib-storage `Upload` with 8 MiB
//     parts (our adapter's part size) and its default queueSize 4.
//   kv (only with --phases kv): each key an object `kv/<key>` holding the JSON value; setMany =
//     one PutObject per entry, 64 in flight (S3 has no batch write); list = ListObjectsV2 then
//     GetObject per key (64 in flight, yielded in key order). No records.
// Runs the blob phases by default; needs the server: run with --only.
import { pkgVersion } from '../lib/pkg.mjs'
import { S3, freshName, s3Client, createBucket, dropBucket } from '../lib/servers.mjs'

const isMissing = (e) => e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404

export default {
  id: 'aws-sdk-s3',
  label: '@aws-sdk/client-s3',
  optIn: true,
  phases: ['blob-put-1k', 'blob-get-1k', 'blob-list', 'blob-list-info', 'blob-multipart'],
  async info() {
    return { version: pkgVersion('@aws-sdk/client-s3'), libStorage: pkgVersion('@aws-sdk/lib-storage'), server: `moto at ${S3.endpoint}`, maxSockets: 64 }
  },
  async open() {
    const s3 = await import('@aws-sdk/client-s3')
    const { Upload } = await import('@aws-sdk/lib-storage')
    const client = await s3Client({ requestHandler: { httpAgent: { maxSockets: 64 }, httpsAgent: { maxSockets: 64 } } })
    const Bucket = freshName('-')
    await createBucket(client, Bucket)
    const putObject = (Key, Body, ContentType = 'application/octet-stream') => client.send(new s3.PutObjectCommand({ Bucket, Key, Body, ContentType }))
    const getObject = async (Key) => {
      try {
        const r = await client.send(new s3.GetObjectCommand({ Bucket, Key }))
        return await r.Body.transformToByteArray()
      } catch (e) {
        if (isMissing(e)) return undefined
        throw e
      }
    }
    const listKeys = async function* (Prefix) {
      let ContinuationToken
      do {
        const page = await client.send(new s3.ListObjectsV2Command({ Bucket, Prefix, ContinuationToken }))
        for (const o of page.Contents ?? []) yield o.Key
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
      } while (ContinuationToken)
    }
    const headObject = async (Key) => {
      try {
        return await client.send(new s3.HeadObjectCommand({ Bucket, Key }))
      } catch (e) {
        if (isMissing(e)) return undefined
        throw e
      }
    }
    const inFlight = async (items, fn) => {
      let next = 0
      const out = new Array(items.length)
      await Promise.all(Array.from({ length: Math.min(64, items.length) }, async () => {
        while (next < items.length) {
          const i = next++
          out[i] = await fn(items[i])
        }
      }))
      return out
    }
    const decode = (bytes) => (bytes === undefined ? undefined : JSON.parse(Buffer.from(bytes).toString('utf8')))
    return {
      setOne: (key, value) => putObject(`kv/${key}`, JSON.stringify(value), 'application/json'),
      setMany: (entries) => inFlight(entries, (e) => putObject(`kv/${e.key}`, JSON.stringify(e.value), 'application/json')),
      getOne: async (key) => decode(await getObject(`kv/${key}`)),
      list: async function* (prefix) {
        const keys = []
        for await (const k of listKeys(`kv/${prefix}`)) keys.push(k)
        const values = await inFlight(keys, async (k) => decode(await getObject(k)))
        for (let i = 0; i < keys.length; i++) yield { key: keys[i].slice(3), value: values[i] }
      },
      blobs: {
        put: (key, body) => putObject(key, body),
        get: getObject,
        list: listKeys,
        listInfo: async function* (Prefix) {
          let ContinuationToken
          do {
            const page = await client.send(new s3.ListObjectsV2Command({ Bucket, Prefix, ContinuationToken }))
            const keys = (page.Contents ?? []).map((o) => o.Key)
            const heads = await inFlight(keys, headObject)
            for (let i = 0; i < keys.length; i++) {
              const h = heads[i]
              if (h) yield { key: keys[i], size: h.ContentLength, contentType: h.ContentType, etag: h.ETag, metadata: h.Metadata ?? {}, updatedAt: h.LastModified }
            }
            ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
          } while (ContinuationToken)
        },
        putStream: (key, readable) =>
          new Upload({ client, params: { Bucket, Key: key, Body: readable, ContentType: 'application/octet-stream' }, partSize: 8 * 1024 * 1024 }).done(),
      },
      close: async () => {
        await dropBucket(client, Bucket)
        client.destroy()
      },
    }
  },
}
