/// <reference types="node" />
// The public types of @cuitty/persist (API.md). Hand-written: the native binding's generated
// types (binding.d.ts) describe internals that index.js wraps.

import type { Readable } from "node:stream";

// ---- config ----

export type StoreConfig = SqliteConfig | PostgresConfig | S3Config | P2PConfig | CustomConfig;

/** The default adapter: one local file, no server. `adapter` omitted means sqlite. */
export interface SqliteConfig {
  name: string;
  adapter?: "sqlite";
  /** Default `./.persist/<name>.db`; missing folders are created; `":memory:"` keeps it in memory. */
  path?: string;
}

export interface PostgresConfig {
  name: string;
  adapter: "postgres";
  connection:
    | string
    | {
        host?: string;
        port?: number;
        database?: string;
        user?: string;
        password?: string;
        ssl?: boolean | "require" | "prefer";
      };
  /**
   * Default `{ max: 10 }`: at most `max` connections (LISTEN for `events.subscribe` aside). With
   * `max` ≥ 2 one of them serves calls made while the store is otherwise idle from the calling
   * thread, waiting at most 2 ms there (README, "Postgres: the lane").
   */
  pool?: { max?: number };
  /** Default `"public"`. */
  schema?: string;
}

export interface S3Config {
  name: string;
  adapter: "s3";
  bucket: string;
  region?: string;
  /** Omitted: the standard AWS chain (environment, profile). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** S3-compatible servers; `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` are honoured too. */
  endpoint?: string;
  /** Default: true when an endpoint is set. */
  forcePathStyle?: boolean;
  /** Default `${name}/`. */
  prefix?: string;
}

export interface P2PConfig {
  name: string;
  adapter: "p2p";
  discovery: {
    method: "mdns" | "dht";
    topic: string;
    /** Multiaddrs of bootstrap peers (dht). */
    bootstrap?: string[];
  };
  /** Local replica and peer identity; persisted by default. */
  path?: string;
  /** Multiaddrs to listen on; default all interfaces, ephemeral port. */
  listen?: string[];
}

export interface CustomConfig {
  name: string;
  adapter: PersistAdapter;
  /** How long one call into the adapter may take before it rejects with TIMEOUT; default 30000. */
  timeoutMs?: number;
}

/** Four calls that carry every namespace of a store. */
export interface PersistAdapter {
  /** `undefined` or `null`: absent. */
  get(key: string): Promise<unknown>;
  put(key: string, value: unknown): Promise<unknown>;
  delete(key: string): Promise<unknown>;
  list(
    prefix: string,
  ):
    | AsyncIterable<{ key: string; value: unknown }>
    | Promise<AsyncIterable<{ key: string; value: unknown }> | Iterable<{ key: string; value: unknown }> | void>;
}

export function createStore(config: StoreConfig): Promise<Store>;

// ---- the store ----

export interface Store {
  readonly name: string;
  readonly adapter: "sqlite" | "postgres" | "s3" | "p2p" | "custom";
  readonly records: Records;
  readonly kv: KV;
  readonly blobs: Blobs;
  readonly events: Events;
  /** Present on p2p stores only. */
  readonly sync?: Sync;
  /** Flushes and releases files, pools and sockets; idempotent. Later calls reject with CLOSED. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// ---- kv ----

export interface KvEntry<T = unknown> {
  key: string;
  value: T;
  /** Changes on every write; pass it back as `ifVersion` for compare-and-set. */
  version: string;
  /** ISO-8601, when a ttl was set. */
  expiresAt?: string;
}

export interface KvListOptions {
  prefix?: string;
  /** Inclusive. */
  start?: string;
  /** Exclusive. */
  end?: string;
  limit?: number;
  reverse?: boolean;
}

export interface KV {
  get<T = unknown>(key: string): Promise<T | undefined>;
  getMany<T = unknown>(keys: string[]): Promise<(T | undefined)[]>;
  getEntry<T = unknown>(key: string): Promise<KvEntry<T> | undefined>;
  /** `ttl` in milliseconds. `ifVersion: null` means only if absent; a mismatch rejects with CONFLICT. */
  set(key: string, value: unknown, options?: { ttl?: number; ifVersion?: string | null }): Promise<KvEntry>;
  /** All or nothing. */
  setMany(entries: { key: string; value: unknown; ttl?: number }[]): Promise<void>;
  /** True if the key existed. */
  delete(key: string, options?: { ifVersion?: string }): Promise<boolean>;
  has(key: string): Promise<boolean>;
  /** Ascending UTF-8 byte order of keys (`reverse` flips it), streamed in pages. */
  list<T = unknown>(options?: KvListOptions): AsyncIterable<KvEntry<T>>;
}

// ---- records ----

export interface Doc<T> {
  id: string;
  version: number;
  createdAt: string;
  updatedAt: string;
  data: T;
}

export type Scalar = string | number | boolean | null;
export type JsonValue = Scalar | JsonValue[] | { [key: string]: JsonValue };

export interface FieldOperators {
  $eq?: unknown;
  $ne?: unknown;
  $gt?: unknown;
  $gte?: unknown;
  $lt?: unknown;
  $lte?: unknown;
  $in?: unknown[];
  $nin?: unknown[];
  $exists?: boolean;
  $prefix?: string;
}

/**
 * `{ field: value }` is equality; `{ field: { $gt: 1 } }` applies operators; fields are dot
 * paths into `data` ("address.city"). Comparisons only match values of the same JSON type.
 */
export type Where<T = Record<string, unknown>> = {
  $and?: Where<T>[];
  $or?: Where<T>[];
  $not?: Where<T>;
} & { [K in keyof T & string]?: T[K] | FieldOperators } & { [path: string]: unknown };

export interface OrderBy {
  field: string;
  direction?: "asc" | "desc";
}

export interface Query<T = Record<string, unknown>> {
  where?: Where<T>;
  /** Ties break by id in the direction of the last key; the default order is by id (ascending). */
  orderBy?: OrderBy | OrderBy[];
  limit?: number;
  /** Id of the last document of the previous page. */
  after?: string;
}

export interface FindResult<T> extends AsyncIterable<Doc<T>> {
  toArray(): Promise<Doc<T>[]>;
}

export interface Collection<T extends object = Record<string, unknown>> {
  /** Id generated when absent (a ULID: time-ordered, strictly increasing within a process); CONFLICT if taken. */
  insert(data: T, options?: { id?: string }): Promise<Doc<T>>;
  /** Upsert. `ifVersion: null` means only if absent. */
  put(id: string, data: T, options?: { ifVersion?: number | null }): Promise<Doc<T>>;
  get(id: string): Promise<Doc<T> | undefined>;
  /** Shallow merge; NOT_FOUND if absent. */
  update(id: string, patch: Partial<T>, options?: { ifVersion?: number }): Promise<Doc<T>>;
  delete(id: string, options?: { ifVersion?: number }): Promise<boolean>;
  find(query?: Query<T>): FindResult<T>;
  count(where?: Where<T>): Promise<number>;
  /** Dot paths allowed. */
  ensureIndex(field: string): Promise<void>;
}

export interface Records {
  collection<T extends object = Record<string, unknown>>(name: string): Collection<T>;
}

// ---- blobs ----

export type BlobBody = Uint8Array | string | NodeJS.ReadableStream | AsyncIterable<Uint8Array>;

export interface BlobInfo {
  key: string;
  size: number;
  contentType: string;
  etag: string;
  metadata: Record<string, string>;
  updatedAt: string;
}

export interface BlobRange {
  start: number;
  /** Exclusive. */
  end?: number;
}

export interface Blobs {
  put(key: string, body: BlobBody, options?: { contentType?: string; metadata?: Record<string, string> }): Promise<BlobInfo>;
  get(key: string, options?: { range?: BlobRange }): Promise<Buffer | undefined>;
  /** NOT_FOUND if absent. */
  stream(key: string, options?: { range?: BlobRange }): Promise<Readable>;
  head(key: string): Promise<BlobInfo | undefined>;
  delete(key: string): Promise<boolean>;
  list(options?: { prefix?: string; limit?: number }): AsyncIterable<BlobInfo>;
}

// ---- events ----

export interface NewEvent {
  type: string;
  data?: unknown;
}

export interface StoredEvent {
  stream: string;
  seq: number;
  type: string;
  data: unknown;
  time: string;
  id: string;
}

export interface Subscription {
  close(): Promise<void>;
}

export interface SubscribeOptions {
  /** Default 1: the whole history, then live events. */
  from?: number | "end";
  /** Called when the handler throws (the subscription then stops); default: a process warning. */
  onError?: (error: unknown) => void;
}

export interface Events {
  /** Returns the last seq. `expectedSeq` (0 for an empty stream) rejects with CONFLICT on mismatch. */
  append(stream: string, events: NewEvent | NewEvent[], options?: { expectedSeq?: number }): Promise<{ seq: number }>;
  read(stream: string, options?: { from?: number; limit?: number; reverse?: boolean }): AsyncIterable<StoredEvent>;
  /** Delivers the history from `from`, then live events, each once. In seq order, except on
   * p2p stores: there events are delivered in the order they reached this peer, so events that
   * merge in from a peer behind ones already delivered (an earlier place in the merged order)
   * still come, once, after them, with the seq they have then. */
  subscribe(
    stream: string,
    handler: (event: StoredEvent) => void | Promise<void>,
    options?: SubscribeOptions,
  ): Promise<Subscription>;
  streams(options?: { prefix?: string }): AsyncIterable<string>;
}

// ---- p2p ----

export interface Sync {
  readonly peerId: string;
  /** Every peer of the topic seen since the store opened. `connected` turns false when the
   * connection closes (at once when the peer's process exits, even killed) or stops answering
   * pings (about 15 s after its link died). `bytesSent` / `bytesReceived`: sync-protocol bytes
   * (document sync messages and blob chunks, with their length prefixes; not transport
   * overhead) to / from that peer since the store opened. */
  peers(): Promise<{ peerId: string; addresses: string[]; connected: boolean; bytesSent: number; bytesReceived: number }[]>;
  waitFor(options?: { peers?: number; timeoutMs?: number }): Promise<void>;
  on(event: "peer" | "synced", listener: (peerId: string) => void): () => void;
}

// ---- errors ----

export type PersistErrorCode =
  | "INVALID_CONFIG"
  | "INVALID_ARGUMENT"
  | "INVALID_VALUE"
  | "NOT_FOUND"
  | "CONFLICT"
  | "CLOSED"
  | "CONNECTION"
  | "TIMEOUT"
  | "PERMISSION"
  | "ADAPTER"
  | "INTERNAL";

export class PersistError extends Error {
  code: PersistErrorCode;
  cause?: unknown;
  constructor(code: PersistErrorCode, message: string, options?: { cause?: unknown });
}
