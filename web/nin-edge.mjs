// nin-edge in JavaScript: one ES module for the browser page and for Node.
//
// It loads a model of a nin-edge web folder, turns an image into the model's input tensor exactly
// as the Python runtime does (nin_edge/runtime/preprocess.py: channels, PIL-style bilinear resize
// with half-pixel centres and antialiasing when shrinking, then (pixel * scale - mean) / std, all
// read from the folder's nin-edge.json, which the exporter fills from the model's own metadata),
// runs it with the onnxruntime it is given (onnxruntime-web in a page, onnxruntime-node in Node)
// and returns the top-k classes with their labels, on the backend asked for (WebAssembly, or WebGPU
// where the folder ships its build). It imports nothing itself, so the same file runs in both places.

/** The web folder layout this module reads (nin-edge.json's "format_version"). */
export const FORMAT = 'nin-edge-web';
export const FORMAT_VERSION = 1;
export const DESCRIPTOR = 'nin-edge.json';

/** Every error this module raises: one sentence that says what was given and what to do. */
export class NinEdgeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NinEdgeError';
  }
}

/** The backends a web folder can offer (nin-edge.json's "backends"), by onnxruntime-web's names. */
export const BACKENDS = { wasm: 'WebAssembly', webgpu: 'WebGPU' };

/**
 * The backends a descriptor's folder offers, each with the precisions it runs ({ wasm: ['fp32', 'int8'],
 * webgpu: ['fp32'] }): WebAssembly always, WebGPU where its build was shipped.
 */
export function folderBackends(d) {
  if (d.backends && typeof d.backends === 'object') return d.backends;
  return { wasm: Object.keys(d.models || {}) }; // folders written before WebGPU: WebAssembly alone
}

/**
 * A WebGPU adapter from `gpu` (a page's navigator.gpu): { adapter, vendor, architecture, description },
 * or a NinEdgeError that says why there is none. Pass the adapter to onnxruntime-web as
 * ort.env.webgpu.adapter so that the one shown is the one used.
 */
export async function webgpuAdapter(gpu = globalThis.navigator?.gpu) {
  if (!gpu) {
    throw new NinEdgeError('this browser has no WebGPU (navigator.gpu is missing: an older browser, WebGPU turned off, or a page not served from https or localhost)');
  }
  let adapter;
  try {
    adapter = await gpu.requestAdapter();
  } catch (err) {
    throw new NinEdgeError(`this browser could not look for a WebGPU adapter (navigator.gpu.requestAdapter() failed: ${err.message})`);
  }
  if (!adapter) {
    throw new NinEdgeError('this browser gives no WebGPU adapter (navigator.gpu.requestAdapter() returned none: no GPU it supports, or WebGPU blocked for this device)');
  }
  const info = adapter.info || {};
  return { adapter, vendor: info.vendor || 'unknown vendor', architecture: info.architecture || 'unknown architecture', description: info.description || '' };
}

// ITU-R 601-2 luma, the weights of PIL's convert("L") and of the Python runtime.
const LUMA = [0.299, 0.587, 0.114];

/** Check a descriptor (the parsed nin-edge.json) before anything runs; returns it. */
export function checkDescriptor(d, where = DESCRIPTOR) {
  if (!d || d.format !== FORMAT) throw new NinEdgeError(`${where} is not a nin-edge web descriptor (no "format": "${FORMAT}")`);
  if (!Number.isInteger(d.format_version) || d.format_version > FORMAT_VERSION) {
    throw new NinEdgeError(`${where} has format version ${d.format_version}; this nin-edge.mjs reads up to ${FORMAT_VERSION}: export the folder again`);
  }
  const { input, preprocessing: pre, labels } = d;
  if (!input || !Number.isInteger(input.channels) || !Number.isInteger(input.size) || input.size < 1) {
    throw new NinEdgeError(`${where}: "input" must give integer "channels" and "size"`);
  }
  if (!Array.isArray(labels) || labels.length < 1) throw new NinEdgeError(`${where}: "labels" must be a non-empty list`);
  const finite = (x) => typeof x === 'number' && Number.isFinite(x);
  if (!pre || !finite(pre.scale) || pre.scale <= 0) throw new NinEdgeError(`${where}: preprocessing scale must be a positive finite number, got ${pre && pre.scale}`);
  for (const key of ['mean', 'std']) {
    const v = pre[key];
    if (!Array.isArray(v) || !v.every(finite) || (v.length !== 1 && v.length !== input.channels)) {
      throw new NinEdgeError(`${where}: preprocessing ${key} must be 1 or ${input.channels} finite numbers, got ${JSON.stringify(v)}`);
    }
  }
  if (!pre.std.every((s) => s > 0)) throw new NinEdgeError(`${where}: preprocessing std must be positive, got ${JSON.stringify(pre.std)}`);
  if (pre.resize !== 'bilinear') throw new NinEdgeError(`${where}: resize "${pre.resize}" is not one this module implements (bilinear)`);
  const lim = d.limits;
  if (!lim || !(lim.max_pixels > 0) || !(lim.max_aspect_ratio >= 1)) throw new NinEdgeError(`${where}: "limits" must give max_pixels and max_aspect_ratio`);
  if (!d.models || !d.models.fp32) throw new NinEdgeError(`${where}: "models" must hold at least the fp32 model`);
  return d;
}

/** Refuse an image whose size (from its header) is over the folder's limits, as the Python runtime does. */
export function checkImageSize(width, height, limits, where = 'image') {
  const { max_pixels: maxPixels, max_aspect_ratio: maxRatio } = limits;
  if (width * height > maxPixels) {
    throw new NinEdgeError(`${where}: image of ${width}x${height} pixels exceeds the limit of ${maxPixels.toLocaleString('en-US')}; refused before decoding`);
  }
  if (Math.max(width, height) > maxRatio * Math.min(width, height)) {
    throw new NinEdgeError(`${where}: image of ${width}x${height} pixels has sides more than ${maxRatio}:1 apart; refused (resizing it would take far more memory than its pixels); crop it first`);
  }
}

/**
 * The size of a PNG, JPEG, GIF, WebP or BMP image from its header, without decoding it.
 * `read(offset, length)` returns a Promise of up to `length` bytes (a Uint8Array) of the file.
 * Anything else is refused with a message naming the formats this reads.
 */
export async function imageSize(read, where = 'file') {
  const head = await read(0, 32);
  const u32be = (b, i) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
  const u16be = (b, i) => (b[i] << 8) | b[i + 1];
  const u16le = (b, i) => b[i] | (b[i + 1] << 8);
  const i32le = (b, i) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
  const ascii = (b, i, n) => String.fromCharCode(...b.subarray(i, i + n));
  const bad = (what) => new NinEdgeError(`${where}: ${what}`);
  if (head.length >= 24 && u32be(head, 0) === 0x89504e47 && ascii(head, 12, 4) === 'IHDR') {
    return { format: 'png', width: u32be(head, 16), height: u32be(head, 20) };
  }
  if (head.length >= 10 && (ascii(head, 0, 6) === 'GIF87a' || ascii(head, 0, 6) === 'GIF89a')) {
    return { format: 'gif', width: u16le(head, 6), height: u16le(head, 8) };
  }
  if (head.length >= 26 && ascii(head, 0, 2) === 'BM') {
    return { format: 'bmp', width: Math.abs(i32le(head, 18)), height: Math.abs(i32le(head, 22)) };
  }
  if (head.length >= 30 && ascii(head, 0, 4) === 'RIFF' && ascii(head, 8, 4) === 'WEBP') {
    const chunk = ascii(head, 12, 4);
    if (chunk === 'VP8 ') return { format: 'webp', width: u16le(head, 26) & 0x3fff, height: u16le(head, 28) & 0x3fff };
    if (chunk === 'VP8L') {
      const b = head.subarray(21, 25);
      return { format: 'webp', width: 1 + (((b[1] & 0x3f) << 8) | b[0]), height: 1 + (((b[3] & 0x0f) << 10) | (b[2] << 2) | ((b[1] & 0xc0) >> 6)) };
    }
    if (chunk === 'VP8X') {
      const w = 1 + (head[24] | (head[25] << 8) | (head[26] << 16));
      const h = 1 + (head[27] | (head[28] << 8) | (head[29] << 16));
      return { format: 'webp', width: w, height: h };
    }
    throw bad(`a WebP file with an unknown first chunk "${chunk}"`);
  }
  if (head.length >= 4 && head[0] === 0xff && head[1] === 0xd8) {
    // JPEG: walk the segments to the first start-of-frame marker, reading only their headers.
    let pos = 2;
    for (let guard = 0; guard < 10000; guard++) {
      const seg = await read(pos, 9);
      if (seg.length < 4 || seg[0] !== 0xff) break;
      const marker = seg[1];
      if (marker === 0xff) { pos += 1; continue; } // fill byte
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isSof) {
        if (seg.length < 9) break;
        return { format: 'jpeg', width: u16be(seg, 7), height: u16be(seg, 5) };
      }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { pos += 2; continue; }
      pos += 2 + u16be(seg, 2);
    }
    throw bad('a JPEG file whose size could not be found (no frame header): it is damaged or truncated');
  }
  throw bad('not an image this page reads: expected PNG, JPEG, GIF, WebP or BMP');
}

/** The (dst x src) weights of PIL-style bilinear resampling along one axis, as sparse rows. */
function resizeWeights(src, dst) {
  const scale = src / dst;
  const support = Math.max(scale, 1.0);
  const rows = [];
  for (let i = 0; i < dst; i++) {
    const centre = (i + 0.5) * scale;
    // The triangle is non-zero for |pixel + 0.5 - centre| < support.
    const lo = Math.max(0, Math.floor(centre - support - 0.5));
    const hi = Math.min(src - 1, Math.ceil(centre + support - 0.5));
    const w = [];
    let sum = 0;
    for (let j = lo; j <= hi; j++) {
      const v = Math.max(0, 1 - Math.abs(j + 0.5 - centre) / support);
      w.push(v);
      sum += v;
    }
    rows.push({ start: lo, weights: Float64Array.from(w, (v) => v / sum) });
  }
  return rows;
}

/**
 * An image's pixels as the Python runtime's float (H, W, channels) array before resizing:
 * `image` is { data, width, height } (an ImageData works) with 1, 3 or 4 bytes per pixel;
 * alpha is dropped, colour becomes luma for grayscale models, gray is repeated for colour models.
 */
function toChannels(image, channels, color, where) {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new NinEdgeError(`${where}: image must have positive integer width and height, got ${width}x${height}`);
  }
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
    throw new NinEdgeError(`${where}: pixels must be a Uint8Array or Uint8ClampedArray, got ${data && data.constructor.name}`);
  }
  const n = width * height;
  const given = data.length / n;
  if (![1, 3, 4].includes(given)) {
    throw new NinEdgeError(`${where}: ${data.length} bytes for ${width}x${height} pixels is not 1, 3 or 4 bytes per pixel`);
  }
  // float32 like the Python runtime's arrays (and half the memory of float64 for a 64 MP photo)
  const out = new Float32Array(n * channels);
  const gray = channels === 1 || color === 'grayscale';
  if (!gray && given === 1 && channels !== 1) {
    for (let p = 0; p < n; p++) for (let c = 0; c < channels; c++) out[p * channels + c] = data[p];
    return out;
  }
  if (!gray && channels !== 3) throw new NinEdgeError(`${where}: image has ${Math.min(given, 3)} channels, the model takes ${channels}`);
  for (let p = 0; p < n; p++) {
    const i = p * given;
    if (gray) {
      // Math.fround keeps the luma in float32 like numpy's float32 matrix product.
      const y = given === 1 ? data[i] : Math.fround(data[i] * LUMA[0] + data[i + 1] * LUMA[1] + data[i + 2] * LUMA[2]);
      for (let c = 0; c < channels; c++) out[p * channels + c] = y;
    } else {
      out[p * 3] = data[i];
      out[p * 3 + 1] = data[i + 1];
      out[p * 3 + 2] = data[i + 2];
    }
  }
  return out;
}

/** Bilinear resize of an interleaved float (H, W, C) image to (size, size, C), columns first (sums in float64). */
function resize(img, height, width, channels, size) {
  if (height === size && width === size) return img;
  const cols = resizeWeights(width, size);
  const rows = resizeWeights(height, size);
  const tmp = new Float32Array(height * size * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < size; x++) {
      const { start, weights } = cols[x];
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < weights.length; k++) acc += weights[k] * img[(y * width + start + k) * channels + c];
        tmp[(y * size + x) * channels + c] = acc;
      }
    }
  }
  const out = new Float32Array(size * size * channels);
  for (let y = 0; y < size; y++) {
    const { start, weights } = rows[y];
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < weights.length; k++) acc += weights[k] * tmp[((start + k) * size + x) * channels + c];
        out[(y * size + x) * channels + c] = acc;
      }
    }
  }
  return out;
}

/**
 * One image to the model's float32 input, (1, channels, size, size) in NCHW order, as
 * nin_edge.runtime.preprocess.preprocess_image computes it.
 */
export function preprocess(image, descriptor, where = 'image') {
  if (image === null || typeof image !== 'object') {
    throw new NinEdgeError(`${where}: expected an image { data, width, height } (an ImageData works), got ${image === null ? 'null' : typeof image}`);
  }
  const { channels, size } = descriptor.input;
  const pre = descriptor.preprocessing;
  checkImageSize(image.width, image.height, descriptor.limits, where);
  const hwc = resize(toChannels(image, channels, pre.color, where), image.height, image.width, channels, size);
  const out = new Float32Array(channels * size * size);
  for (let c = 0; c < channels; c++) {
    const mean = pre.mean.length === 1 ? pre.mean[0] : pre.mean[c];
    const std = pre.std.length === 1 ? pre.std[0] : pre.std[c];
    for (let p = 0; p < size * size; p++) out[c * size * size + p] = (hwc[p * channels + c] * pre.scale - mean) / std;
  }
  return out;
}

/** How many classes `classify` gives when not told: at most DEFAULT_TOP_K, as the Python runtime. */
export const DEFAULT_TOP_K = 5;
export function defaultTopK(classes) {
  return Math.min(DEFAULT_TOP_K, classes);
}

/** Refuse a topK outside 1..classes, as the Python runtime does. */
export function checkTopK(topK, classes) {
  if (!Number.isInteger(topK) || topK < 1 || topK > classes) {
    throw new NinEdgeError(`topK must be a whole number from 1 to ${classes}, got ${topK}`);
  }
}

/** Probabilities from logits: softmax with the maximum subtracted first, as the Python runtime does. */
export function softmax(logits) {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((v) => v / sum);
}

async function readBytes(url) {
  if (url.protocol === 'file:') {
    const fs = await import('node:fs/promises');
    try {
      return new Uint8Array(await fs.readFile(url));
    } catch (err) {
      throw new NinEdgeError(`cannot read ${url.pathname}: ${err.code || err.message}`);
    }
  }
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new NinEdgeError(`cannot fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new NinEdgeError(`cannot fetch ${url}: HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function classesDiffer(file, classes, labels) {
  return `${DESCRIPTOR} does not fit its model: ${file} gives ${classes} class scores, ${DESCRIPTOR} lists ${labels} label${labels === 1 ? '' : 's'}; export the folder again (or give "labels" one name per class)`;
}

/** A loaded model: `classify(image, topK)` answers one image; `run(tensor)` gives its logits. */
export class Classifier {
  constructor(ort, session, descriptor, precision, file, backend) {
    this.ort = ort;
    this.session = session;
    this.descriptor = descriptor;
    this.precision = precision;
    this.file = file;
    this.backend = backend; // undefined: the onnxruntime's own default (onnxruntime-node's CPU)
    this.labels = descriptor.labels;
  }

  /** The logits of one preprocessed image (a Float32Array of channels*size*size values). */
  async run(tensor) {
    const { channels, size, name } = this.descriptor.input;
    const feeds = { [name]: new this.ort.Tensor('float32', tensor, [1, channels, size, size]) };
    const result = await this.session.run(feeds);
    const logits = result[this.descriptor.output.name].data;
    if (logits.length !== this.labels.length) throw new NinEdgeError(classesDiffer(this.file, logits.length, this.labels.length));
    if (!logits.every(Number.isFinite)) throw new NinEdgeError('the model returned non-finite logits for this image');
    return logits;
  }

  /**
   * The top-k classes of one image ({ data, width, height }, 1, 3 or 4 bytes per pixel; an
   * ImageData works): { top: [{ index, label, probability }], probabilities, ms, inferenceMs }: ms is
   * the time from pixels to probabilities and inferenceMs the model's run alone. topK defaults to
   * min(5, classes).
   */
  async classify(image, topK = defaultTopK(this.labels.length), where = 'image') {
    checkTopK(topK, this.labels.length);
    const start = performance.now();
    const tensor = preprocess(image, this.descriptor, where);
    const ran = performance.now();
    const probabilities = softmax(await this.run(tensor));
    const end = performance.now();
    const [ms, inferenceMs] = [end - start, end - ran];
    const order = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, topK);
    const top = order.map(([probability, index]) => ({ index, label: this.labels[index], probability }));
    return { top, probabilities, ms, inferenceMs };
  }
}

/**
 * Open the model of a web folder: `base` is the folder's URL (http(s): in a page, file: in Node),
 * `ort` the onnxruntime namespace. Checks the descriptor and the model file's sha256 first, so a
 * truncated or altered file is named instead of failing inside onnxruntime. `backend` ('wasm' or
 * 'webgpu', one the folder offers; `ort` must be the matching onnxruntime-web build) is the session's
 * one execution provider (onnxruntime still runs any node it has no kernel for on its CPU kernels,
 * as it always does); without it, `ort` chooses.
 */
export async function openFolder(ort, base, { precision = 'fp32', backend = undefined, sessionOptions = {} } = {}) {
  let baseUrl;
  try {
    baseUrl = new URL(String(base).endsWith('/') ? String(base) : `${base}/`);
  } catch {
    throw new NinEdgeError(`the folder must be given as a URL, got "${base}": in a page an http(s) URL, in Node a file: URL (url.pathToFileURL(folder))`);
  }
  const descriptorUrl = new URL(DESCRIPTOR, baseUrl);
  let descriptor;
  try {
    descriptor = JSON.parse(new TextDecoder().decode(await readBytes(descriptorUrl)));
  } catch (err) {
    if (err instanceof NinEdgeError) throw err;
    throw new NinEdgeError(`${descriptorUrl} is not readable JSON: ${err.message}`);
  }
  checkDescriptor(descriptor, descriptorUrl.toString());
  const entry = descriptor.models[precision];
  if (!entry) {
    throw new NinEdgeError(`this folder has no ${precision} model; it has: ${Object.keys(descriptor.models).join(', ')}`);
  }
  if (backend !== undefined) {
    const offered = folderBackends(descriptor);
    if (!Object.hasOwn(BACKENDS, backend)) throw new NinEdgeError(`backend "${backend}" is not one of ${Object.keys(BACKENDS).join(', ')}`);
    if (!offered[backend]) {
      throw new NinEdgeError(`this folder has no ${BACKENDS[backend]} build of onnxruntime-web (export it with --web-webgpu); it offers: ${Object.keys(offered).join(', ')}`);
    }
    if (!offered[backend].includes(precision)) {
      throw new NinEdgeError(`${BACKENDS[backend]} runs the ${offered[backend].join(', ')} model${offered[backend].length > 1 ? 's' : ''} of this folder, not ${precision}`);
    }
    if (sessionOptions.executionProviders) throw new NinEdgeError('give the backend or sessionOptions.executionProviders, not both');
    // An ORT-format file keeps the channels-first layout: WebGPU's default channels-last rewrite needs
    // kernel information that only an ONNX file carries (it fails with "op_id: com.ms.internal.nhwc:Conv").
    const provider = backend === 'webgpu' && entry.form === 'ort' ? { name: 'webgpu', preferredLayout: 'NCHW' } : backend;
    sessionOptions = { ...sessionOptions, executionProviders: [provider] };
  }
  const bytes = await readBytes(new URL(entry.file, baseUrl));
  if (bytes.length !== entry.bytes || (await sha256Hex(bytes)) !== entry.sha256) {
    throw new NinEdgeError(`${entry.file} does not match the size and sha256 in ${DESCRIPTOR}: it was altered or truncated; copy the folder again`);
  }
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, sessionOptions);
  } catch (err) {
    throw new NinEdgeError(`onnxruntime could not load ${entry.file}: ${String(err.message || err).split('\n')[0]}`);
  }
  const { input, output } = descriptor;
  if (!session.inputNames.includes(input.name) || !session.outputNames.includes(output.name)) {
    throw new NinEdgeError(`${entry.file} has inputs ${session.inputNames} and outputs ${session.outputNames}; ${DESCRIPTOR} says ${input.name} and ${output.name}`);
  }
  // The class count, from the output's shape where the model states it (otherwise the first run checks it).
  const classes = (session.outputMetadata || []).find((m) => m.name === output.name)?.shape?.at(-1);
  if (Number.isInteger(classes) && classes !== descriptor.labels.length) {
    throw new NinEdgeError(classesDiffer(entry.file, classes, descriptor.labels.length));
  }
  return new Classifier(ort, session, descriptor, precision, entry.file, backend);
}
