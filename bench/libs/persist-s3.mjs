// @cuitty/persist on its S3 adapter (issue 6), on the moto server of scripts/ensure-s3.sh: a bucket
// created per store (emptied and deleted on close), credentials test/test, path-style.
// Runs the blob phases by default (kv / records on request: --phases kv --n 2000); needs the server: run with --only.
import { loadPersist, wrapStore, addonProfile, persistVersion } from '../lib/persist-common.mjs'
import { S3, s3Config, freshName, s3Client, createBucket, dropBucket } from '../lib/servers.mjs'

export default {
  id: 'persist-s3',
  label: '@cuitty/persist (s3)',
  ours: true,
  optIn: true,
  phases: ['blob-put-1k', 'blob-get-1k', 'blob-list', 'blob-list-info', 'blob-multipart'],
  async info() {
    return { version: persistVersion(), build: addonProfile(), server: `moto at ${S3.endpoint}` }
  },
  async open() {
    const { createStore } = await loadPersist()
    const admin = await s3Client()
    const bucket = freshName('-')
    await createBucket(admin, bucket)
    let store
    try {
      store = await createStore({ name: 'bench', adapter: 's3', bucket, ...s3Config() })
    } catch (e) {
      await dropBucket(admin, bucket).catch(() => {})
      admin.destroy()
      throw e
    }
    const s = wrapStore(store)
    s.close = async () => {
      await store.close()
      await dropBucket(admin, bucket)
      admin.destroy()
    }
    return s
  },
}
