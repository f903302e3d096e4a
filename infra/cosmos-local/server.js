#!/usr/bin/env node
// Fleet's local Cosmos-protocol server: @vercel/cosmosdb-server 1.0.1 with the
// gaps our tests depend on corrected so that it answers as real Azure Cosmos DB
// for NoSQL is documented to. Every correction is listed in docs/datastore.md
// ("The local Cosmos-protocol server"); nothing here emulates behaviour that
// real Cosmos does not have, except the opt-in fault knobs under /_fleet/.
//
// Usage: node server.js [--host 127.0.0.1] [--port 8081] [--https] [--ready-file PATH]
//   --port 0 picks a free port; --ready-file receives {"port", "pid", "endpoint"}
//   once the server is listening; --parent-pid N exits when process N is gone
//   (so a test run that is killed does not leave the server behind).
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");
const Module = require("module");
const path = require("path");
const { randomUUID } = require("crypto");

const PKG = path.dirname(require.resolve("@vercel/cosmosdb-server/package.json"));
const lib = (name) => require(path.join(PKG, "lib", name));
const use = (name) => lib(name).default;

const Account = use("account");
const Documents = use("account/documents");
const makeRouter = use("router");
const trueHeader = use("true-header");
const readJson = use("json");
const readItems = use("handler/_read-items");
const { default: partitionHeader } = lib("utils/get-partition-from-header");
const docOps = lib("handler/_document-operations");
const { patchOperation } = lib("handler/_patch-operations");
const { SyntaxError: QuerySyntaxError } = require(
  require.resolve("@zeit/cosmosdb-query", { paths: [PKG] })
);

// The stock query parser is pegjs output generated without its result cache, so
// it backtracks exponentially in the nesting depth of parentheses (3 levels take
// ~0.3 s, 6 block the server for minutes). Real Cosmos parses any nesting; this
// adds pegjs's own packrat memo to every rule and swaps the parse function in.
function memoizeQueryParser() {
  const file = require.resolve("@zeit/cosmosdb-query/lib/parser.js", { paths: [PKG] });
  const original = require(file);
  let src = fs.readFileSync(file, "utf8");
  const entry = "function peg$parse(input, options) {";
  const rules = [...src.matchAll(/^ {2}function (peg\$parse\w+)\(\) \{$/gm)].map((m) => m[1]);
  if (!src.includes(entry) || rules.length < 10) throw new Error("unexpected query parser shape");
  src = src.replace(entry, () => `${entry}\n  var peg$memo = new Map();`);
  rules.forEach((name, i) => {
    src = src.replace(
      `  function ${name}() {`,
      () => `  function ${name}() {
    var key = peg$currPos * ${rules.length} + ${i}, hit = peg$memo.get(key);
    if (hit !== undefined) { peg$currPos = hit[0]; return hit[1]; }
    var result = ${name}$raw();
    peg$memo.set(key, [peg$currPos, result]);
    return result;
  }
  function ${name}$raw() {`
    );
  });
  const memoized = new Module(`${file}#memoized`, module);
  memoized.filename = file;
  memoized.paths = Module._nodeModulePaths(path.dirname(file));
  memoized._compile(src, file);
  const parse = memoized.exports.parse;
  original.parse = (input, options) => {
    try {
      return parse(input, options);
    } catch (err) {
      // Keep the class the rest of the package checks with instanceof (-> 400).
      if (err && err.name === "SyntaxError" && "expected" in err) {
        Object.setPrototypeOf(err, original.SyntaxError.prototype);
      }
      throw err;
    }
  };
}
memoizeQueryParser();

const MAX_DOCUMENT_BYTES = 2 * 1024 * 1024; // Cosmos DB's documented item size limit
const MAX_BATCH_OPERATIONS = 100; // Cosmos DB's documented transactional batch limit

// ---------------------------------------------------------------------------
// Errors that carry their HTTP status, so one place turns them into responses.

class HttpError extends Error {
  constructor(statusCode, code, message, subStatus) {
    super(message);
    this.statusCode = statusCode;
    this.code = code;
    this.subStatus = subStatus;
  }
}

const notFound = () => ({
  statusCode: 404,
  body: { code: "NotFound", message: "Entity with the specified id does not exist in the system." }
});

// ---------------------------------------------------------------------------
// Corrections to the in-memory model.

// Stock looks a document up by id and, when the (partition, id) index has no
// entry, falls back to treating the id as a _rid, so an id that happens to equal
// another document's _rid resolves to it. Real Cosmos addresses /docs/{id} by
// name within the partition only.
Documents.prototype._toRid = function toRid(keyPath, value, partition) {
  const rid = this._index.get(this._getId(keyPath, value, partition));
  return rid === undefined ? "\u0000missing" : rid;
};

const SYSTEM = new Set(["_rid", "_self", "_etag", "_ts", "_attachments", "_lsn"]);
function userBytes(doc) {
  const visible = {};
  for (const [k, v] of Object.entries(doc)) if (!SYSTEM.has(k)) visible[k] = v;
  return Buffer.byteLength(JSON.stringify(visible));
}
function checkSize(doc) {
  if (doc && typeof doc === "object" && userBytes(doc) > MAX_DOCUMENT_BYTES) {
    throw new HttpError(413, "RequestEntityTooLarge", "Request size is too large");
  }
}
// Stock stores items of any size; real Cosmos answers 413 above 2 MB. Every
// document write (create, replace, upsert, patch, batch) goes through these two.
for (const method of ["create", "replace"]) {
  const original = Documents.prototype[method];
  Documents.prototype[method] = function sized(data, ...rest) {
    checkSize(data);
    return original.call(this, data, ...rest);
  };
}

// Time to live. Stock ignores it; real Cosmos, once a container's defaultTtl is
// set (-1: on, items expire only with their own ttl), stops returning an item
// ttl seconds after its last write (_ts, whole seconds) and deletes it. Writes
// note the earliest expiry; every request first removes the items that are due
// (a scan only when something is due), so reads, queries and creates behave as
// if the item were gone from that second on.
let nextExpiry = Infinity;
function itemTtl(doc, defaultTtl) {
  if (defaultTtl === undefined || defaultTtl === null) return null;
  const ttl = doc.ttl === undefined || doc.ttl === null ? defaultTtl : doc.ttl;
  return typeof ttl === "number" && ttl > 0 ? ttl : null;
}
function noteExpiry(documents, data) {
  const collection = documents._parent.read() || {};
  const ttl = itemTtl(data, collection.defaultTtl);
  if (ttl !== null) nextExpiry = Math.min(nextExpiry, Math.floor(Date.now() / 1e3) + ttl);
}
for (const method of ["create", "replace"]) {
  const original = Documents.prototype[method];
  Documents.prototype[method] = function noted(data, ...rest) {
    const written = original.call(this, data, ...rest);
    if (data && typeof data === "object") noteExpiry(this, data);
    return written;
  };
}
function expireItems(account) {
  const now = Date.now() / 1e3;
  if (!account || now < nextExpiry) return;
  nextExpiry = Infinity;
  for (const database of account.databases._data.values()) {
    for (const collection of database.collections._data.values()) {
      const props = collection.read() || {};
      if (props.defaultTtl === undefined || props.defaultTtl === null) continue;
      const docs = collection.documents;
      for (const item of [...docs._data.values()]) {
        const doc = item.read();
        const ttl = itemTtl(doc, props.defaultTtl);
        if (ttl === null) continue;
        if (doc._ts + ttl <= now) docs.delete(doc.id, docs._getPartition(doc));
        else nextExpiry = Math.min(nextExpiry, doc._ts + ttl);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Replacement route handlers.

function partitionValue(req) {
  // The SDK sends ["value"]; "[{}]" (or no header) means "no partition key".
  const raw = partitionHeader(req);
  if (!raw) return undefined;
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new HttpError(400, "BadRequest", `Partition key ${raw} is invalid.`);
  }
  if (!Array.isArray(parsed)) parsed = [parsed];
  if (parsed.length === 0) return undefined;
  const [value] = parsed;
  if (value !== null && typeof value === "object") return undefined;
  return value;
}

function collectionOr404(account, dbId, collId) {
  const collection = account.database(dbId).collection(collId);
  return collection.read() ? collection : null;
}

// Stock crashes (500) reading a missing document; real Cosmos answers 404.
function readDocument(account, req, res, { dbId, collId, docId }) {
  const collection = collectionOr404(account, dbId, collId);
  const pk = partitionValue(req);
  const result = !collection
    ? notFound()
    : pk === undefined
      ? {
          statusCode: 400,
          body: { code: "BadRequest", message: "PartitionKey value must be supplied for this operation." }
        }
      : collection.document(docId, pk).read()
        ? docOps.readOperation(collection, { partitionKey: partitionHeader(req), id: docId })
        : notFound();
  res.statusCode = result.statusCode;
  return result.body;
}

// Real Cosmos serves an ORDER BY from a composite index or from its exact reverse.
function withReverses(compositeIndexes) {
  const flip = (o) => (o === "descending" ? "ascending" : "descending");
  const out = [];
  for (const index of compositeIndexes || []) {
    out.push(index);
    out.push(index.map((p) => ({ ...p, order: flip(p.order || "ascending") })));
  }
  return out;
}

// Stock ignores the partition key header of a query (answering from every
// partition, or 400 when the WHERE clause does not name the key) and serves an
// ORDER BY only from a composite index in its declared direction. Real Cosmos
// scopes a query to the partition in the header and serves reversed indexes.
// A cross-partition query is answered directly: this server has one partition
// key range, so that is the result the SDK's own merge would produce.
function queryDocuments(account, req, res, { dbId, collId }) {
  return readItems(req, res, "Documents", async ({ continuation, maxItemCount }) => {
    const body = await readJson(req);
    if (!body || typeof body.query !== "string") {
      res.statusCode = 400;
      return { code: "BadRequest", message: "The query is missing." };
    }
    const collection = collectionOr404(account, dbId, collId);
    if (!collection) return null;
    const docs = collection.documents;
    const pk = partitionValue(req);
    const crossPartition = trueHeader(req, "x-ms-documentdb-query-enablecrosspartition");
    let data = [...docs._data.values()].map((item) => item.read());
    if (pk !== undefined) {
      data = data.filter((d) => docs._getPartition(d) === pk);
    } else if (!crossPartition) {
      res.statusCode = 400;
      return {
        code: "BadRequest",
        message: "Cross partition query is required but disabled. Please set x-ms-documentdb-query-enablecrosspartition to true."
      };
    }
    const policy = collection.read().indexingPolicy || {};
    try {
      return docs._getQuery(body.query).exec(data, {
        parameters: body.parameters,
        udf: docs._userDefinedFunctions(),
        maxItemCount,
        continuation,
        compositeIndexes: withReverses(policy.compositeIndexes)
      });
    } catch (err) {
      if (err instanceof QuerySyntaxError) throw err;
      res.statusCode = 400;
      return { code: "BadRequest", message: err.message };
    }
  });
}

function runBatchOperation(collection, op, pkHeader, pk) {
  const docs = collection.documents;
  const type = op && op.operationType;
  const body = op && op.resourceBody;
  if (["Create", "Upsert", "Replace"].includes(type)) {
    if (!body || typeof body !== "object") {
      return { statusCode: 400, body: { code: "BadRequest", message: "resourceBody is missing." } };
    }
    if (docs._getPartition(body) !== pk) {
      return {
        statusCode: 400,
        body: {
          code: "BadRequest",
          message: "PartitionKey extracted from document doesn't match the one specified in the header."
        }
      };
    }
  }
  switch (type) {
    case "Create":
      return docOps.createOperation(collection, { resourceBody: body });
    case "Upsert":
      return docOps.upsertOperation(collection, { partitionKey: pkHeader, ifMatch: op.ifMatch, resourceBody: body });
    case "Read":
      return docOps.readOperation(collection, { partitionKey: pkHeader, id: op.id });
    case "Delete":
      return docOps.deleteOperation(collection, { partitionKey: pkHeader, ifMatch: op.ifMatch, id: op.id });
    case "Replace":
      if (op.id !== body.id) {
        return { statusCode: 400, body: { code: "BadRequest", message: "The id in the URI does not match the document." } };
      }
      return docOps.replaceOperation(collection, { partitionKey: pkHeader, ifMatch: op.ifMatch, resourceBody: body });
    case "Patch":
      return patchOperation(collection, {
        id: op.id,
        partitionKey: pkHeader,
        ifMatch: op.ifMatch,
        operations: (body && body.operations) || [],
        condition: body && body.condition
      });
    default:
      return { statusCode: 400, body: { code: "BadRequest", message: `Unknown operation type ${type}.` } };
  }
}

// Stock executes batch operations one by one without rollback, cannot read the
// partition key of Replace/Delete/Read operations (500) and has no Patch. Real
// Cosmos runs a transactional batch atomically: on the first failing operation
// nothing is written, the answer is 207 Multi-Status, the failing operation
// carries its own status and every other one 424 Failed Dependency.
async function batchDocuments(account, req, res, { dbId, collId }) {
  const ops = await readJson(req);
  const collection = collectionOr404(account, dbId, collId);
  if (!collection) {
    res.statusCode = 404;
    return notFound().body;
  }
  if (!Array.isArray(ops) || ops.length === 0 || ops.length > MAX_BATCH_OPERATIONS) {
    res.statusCode = 400;
    return { code: "BadRequest", message: `A batch holds 1..${MAX_BATCH_OPERATIONS} operations.` };
  }
  const pkHeader = partitionHeader(req);
  const pk = partitionValue(req);
  if (pk === undefined) {
    res.statusCode = 400;
    return { code: "BadRequest", message: "A transactional batch needs a partition key." };
  }
  const docs = collection.documents;
  const undo = []; // [id, document before the operation or undefined]
  const results = [];
  let failure = null;
  for (let i = 0; i < ops.length && !failure; i += 1) {
    const op = ops[i] || {};
    const id = op.id !== undefined ? op.id : op.resourceBody && op.resourceBody.id;
    const before = typeof id === "string" ? collection.document(id, pk).read() : undefined;
    let result;
    try {
      result = runBatchOperation(collection, op, pkHeader, pk);
    } catch (err) {
      const status = err.statusCode || 500;
      result = { statusCode: status, body: { code: err.code || "InternalServerError", message: err.message } };
    }
    if (result.statusCode >= 400) {
      failure = { index: i, result };
    } else {
      if (typeof id === "string") undo.push([id, before]);
      results.push({
        statusCode: result.statusCode,
        requestCharge: 1,
        eTag: result.body ? result.body._etag : undefined,
        resourceBody: result.body
      });
    }
  }
  if (!failure) {
    res.statusCode = 200;
    return results;
  }
  for (let j = undo.length - 1; j >= 0; j -= 1) {
    const [id, before] = undo[j];
    if (collection.document(id, pk).read()) docs.delete(id, pk);
    if (before) docs._set(before);
  }
  res.statusCode = 207;
  return ops.map((_, j) =>
    j === failure.index
      ? {
          statusCode: failure.result.statusCode,
          requestCharge: 0,
          ...(failure.result.body && failure.result.body.message ? { message: failure.result.body.message } : {})
        }
      : { statusCode: 424, requestCharge: 0 }
  );
}

// ---------------------------------------------------------------------------
// Routes: the package's own table with the corrected handlers swapped in.

const h = (name) => use(`handler/${name}`);
const DOC = "/dbs/:dbId/colls/:collId/docs/:docId";
const DOCS = "/dbs/:dbId/colls/:collId/docs";
const route = makeRouter({
  DELETE: {
    [DOC]: h("delete-document"),
    "/dbs/:dbId/colls/:collId/udfs/:udfId": h("delete-user-defined-function"),
    "/dbs/:dbId/colls/:collId": h("delete-collection"),
    "/dbs/:dbId": h("delete-database")
  },
  GET: {
    [DOC]: readDocument,
    [DOCS]: h("read-documents"),
    "/dbs/:dbId/colls/:collId/pkranges": h("read-partition-key-ranges"),
    "/dbs/:dbId/colls/:collId/udfs/:udfId": h("read-user-defined-function"),
    "/dbs/:dbId/colls/:collId/udfs": h("read-user-defined-functions"),
    "/dbs/:dbId/colls/:collId": h("read-collection"),
    "/dbs/:dbId/colls": h("read-collections"),
    "/dbs/:dbId": h("read-database"),
    "/dbs": h("read-databases"),
    "/": h("read-meta")
  },
  PATCH: { [DOC]: h("patch-document") },
  POST: {
    [DOCS]: h("create-document"),
    "/dbs/:dbId/colls/:collId/udfs": h("create-user-defined-function"),
    "/dbs/:dbId/colls": h("create-collection"),
    "/dbs": h("create-database")
  },
  POST_UPSERT: {
    [DOCS]: h("upsert-document"),
    "/dbs/:dbId/colls/:collId/udfs": h("upsert-user-defined-function")
  },
  POST_QUERY: {
    [DOCS]: queryDocuments,
    "/dbs/:dbId/colls/:collId/udfs": h("query-user-defined-functions"),
    "/dbs/:dbId/colls": h("query-collections"),
    "/dbs": h("query-databases")
  },
  POST_BATCH: { [DOCS]: batchDocuments },
  PUT: {
    [DOC]: h("replace-document"),
    "/dbs/:dbId/colls/:collId/udfs/:udfId": h("replace-user-defined-function"),
    "/dbs/:dbId/colls/:collId": h("replace-collection")
  }
});

// ---------------------------------------------------------------------------
// Opt-in fault knobs (test only): POST /_fleet/faults with
//   {"throttle": N, "retry_after_ms": 50, "match": "/docs"}  -> the next N matching
//      requests answer 429 with x-ms-retry-after-ms, as throttled Cosmos does;
//   {"delay_ms": 500, "delay_count": N}  -> the next N requests answer late.
// GET /_fleet/faults reports the knobs and counters; DELETE resets the knobs.

const faults = {
  throttle: 0,
  retry_after_ms: 50,
  match: "",
  delay_ms: 0,
  delay_count: 0,
  throttled: 0,
  delayed: 0,
  connections: 0 // TCP connections accepted so far: shows whether clients reuse them
};

async function admin(req, res) {
  if (req.method === "DELETE") {
    Object.assign(faults, { throttle: 0, retry_after_ms: 50, match: "", delay_ms: 0, delay_count: 0 });
  } else if (req.method === "POST") {
    const body = (await readJson(req)) || {};
    for (const key of ["throttle", "retry_after_ms", "delay_ms", "delay_count"]) {
      if (body[key] !== undefined) faults[key] = Math.max(0, Number(body[key]) || 0);
    }
    if (body.match !== undefined) faults.match = String(body.match);
  }
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(faults));
}

function takeThrottle(req) {
  if (faults.throttle <= 0) return false;
  if (faults.match && !`${req.method} ${req.url}`.includes(faults.match)) return false;
  faults.throttle -= 1;
  faults.throttled += 1;
  return true;
}

function takeDelay() {
  if (faults.delay_count <= 0 || faults.delay_ms <= 0) return 0;
  faults.delay_count -= 1;
  faults.delayed += 1;
  return faults.delay_ms;
}

// ---------------------------------------------------------------------------
// The request handler (the package's is not exported): same response shape,
// plus keep-alive, the real scheme in content-location, and errors that carry
// their own status.

function makeHandler(state) {
  return (req, res) => {
    (async () => {
      if (req.url.startsWith("/_fleet/faults")) return admin(req, res);
      if (state.verbose) {
        res.on("finish", () => console.log(`${req.method} ${req.url} -> ${res.statusCode}`));
      }
      expireItems(state.account);
      const delay = takeDelay();
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      let body;
      if (takeThrottle(req)) {
        res.statusCode = 429;
        res.setHeader("x-ms-retry-after-ms", String(faults.retry_after_ms));
        res.setHeader("x-ms-substatus", "3200");
        body = { code: "TooManyRequests", message: "Request rate is large. More Request Units may be needed." };
      } else {
        const found = route(req);
        if (!found) {
          res.statusCode = 400;
          body = { code: "BadRequest", message: "no route" };
        } else {
          const [params, handler] = found;
          try {
            body = await handler(state.account, req, res, params);
          } catch (err) {
            if (!(err instanceof HttpError) && !(err instanceof QuerySyntaxError)) console.error(err);
            res.statusCode = err.statusCode || (err instanceof QuerySyntaxError ? 400 : 500);
            body = { code: err.code || "InternalServerError", message: err.message };
          }
          if (res.statusCode > 399 && body && !body.message) body.message = "";
        }
      }
      if (body && body._etag) res.setHeader("etag", body._etag);
      res.setHeader("content-type", "application/json");
      res.setHeader("content-location", `${state.scheme}://${req.headers.host}${req.url}`);
      res.setHeader("connection", "keep-alive");
      res.setHeader("x-ms-activity-id", randomUUID());
      res.setHeader("x-ms-request-charge", "1");
      if (req.headers["a-im"] && res.statusCode === 200) {
        if (req.headers["if-none-match"]) res.statusCode = 304;
        res.setHeader("etag", "1");
      }
      res.end(body === undefined ? undefined : JSON.stringify(body));
      return undefined;
    })().catch((err) => {
      console.error(err);
      if (!res.writableEnded) {
        res.statusCode = 500;
        res.end("");
      }
    });
  };
}

function parseArgs(argv) {
  const args = {
    host: process.env.COSMOS_LOCAL_HOST || "127.0.0.1",
    port: Number(process.env.COSMOS_LOCAL_PORT || 8081),
    https: false,
    readyFile: null,
    parentPid: null
  };
  for (let i = 0; i < argv.length; i += 1) {
    const key = argv[i];
    if (key === "--host") args.host = argv[(i += 1)];
    else if (key === "--port" || key === "-p") args.port = Number(argv[(i += 1)]);
    else if (key === "--https") args.https = true;
    else if (key === "--ready-file") args.readyFile = argv[(i += 1)];
    else if (key === "--parent-pid") args.parentPid = Number(argv[(i += 1)]);
    else throw new Error(`unknown argument ${key}`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new Error(`bad port ${args.port}`);
  }
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const state = {
    account: null,
    scheme: args.https ? "https" : "http",
    verbose: process.env.COSMOS_LOCAL_VERBOSE === "1" // one log line per request
  };
  const handler = makeHandler(state);
  const server = args.https
    ? https.createServer(
        { cert: fs.readFileSync(path.join(PKG, "cert.pem")), key: fs.readFileSync(path.join(PKG, "key.pem")) },
        handler
      )
    : http.createServer(handler);
  server.on("connection", () => {
    faults.connections += 1;
  });
  // aiohttp keeps idle connections 15 s; closing ours sooner would race a reuse.
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 125000;
  server.listen(args.port, args.host, () => {
    const { port } = server.address();
    const host = args.host.includes(":") ? `[${args.host}]` : args.host;
    const endpoint = `${state.scheme}://${host}:${port}/`;
    state.account = new Account(args.host, port);
    // Stock always advertises https; the SDK follows the advertised endpoint.
    const data = state.account.read();
    for (const key of ["writableLocations", "readableLocations"]) {
      data[key] = data[key].map((loc) => ({ ...loc, databaseAccountEndpoint: endpoint }));
    }
    if (args.readyFile) {
      const tmp = `${args.readyFile}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify({ port, pid: process.pid, endpoint }));
      fs.renameSync(tmp, args.readyFile);
    }
    console.log(`cosmos-local: listening on ${endpoint}`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    // Idle keep-alive connections would otherwise hold close() open.
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  if (args.parentPid) {
    setInterval(() => {
      try {
        process.kill(args.parentPid, 0);
      } catch (err) {
        stop();
      }
    }, 1000).unref();
  }
}

main();
