// Node's own test runner (node --test test/): nin-edge.mjs on onnxruntime-node.
//
// The unit tests need nothing else. The parity test needs a web folder and the Python runtime's
// answers for the same pixels; tests/test_web.py writes both and names the file in NIN_EDGE_PARITY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { checkDescriptor, checkImageSize, checkTopK, folderBackends, imageSize, NinEdgeError, openFolder, preprocess, softmax, webgpuAdapter } from '../nin-edge.mjs';
import { topClasses } from '../example.mjs';

const reader = (bytes) => async (offset, length) => bytes.subarray(offset, offset + length);
const be32 = (n) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const le16 = (n) => [n & 255, (n >>> 8) & 255];
const le32 = (n) => [...le16(n), ...le16(n >>> 16)];
const ascii = (s) => [...s].map((c) => c.charCodeAt(0));

function descriptor(over = {}) {
  return {
    format: 'nin-edge-web',
    format_version: 1,
    input: { name: 'input', channels: 1, size: 4, layout: 'NCHW' },
    output: { name: 'logits' },
    labels: ['a', 'b'],
    preprocessing: { color: 'grayscale', resize: 'bilinear', scale: 1 / 255, mean: [0.5], std: [0.25] },
    limits: { max_pixels: 64000000, max_aspect_ratio: 64 },
    models: { fp32: { file: 'model.onnx' } },
    ...over,
  };
}

test('image sizes come from the headers of PNG, GIF, BMP, WebP and JPEG files', async () => {
  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 0, 0, 0, 13, ...ascii('IHDR'), ...be32(100000), ...be32(70000), 8, 0]);
  assert.deepEqual(await imageSize(reader(png)), { format: 'png', width: 100000, height: 70000 });
  const gif = Uint8Array.from([...ascii('GIF89a'), ...le16(640), ...le16(480), 0, 0]);
  assert.deepEqual(await imageSize(reader(gif)), { format: 'gif', width: 640, height: 480 });
  const bmp = Uint8Array.from([...ascii('BM'), ...new Array(16).fill(0), ...le32(33), ...le32(-44), 0, 0, 0, 0]);
  assert.deepEqual(await imageSize(reader(bmp)), { format: 'bmp', width: 33, height: 44 });
  const webp = Uint8Array.from([...ascii('RIFF'), 0, 0, 0, 0, ...ascii('WEBPVP8X'), 10, 0, 0, 0, 0, 0, 0, 0, 199, 0, 0, 99, 0, 0]);
  assert.deepEqual(await imageSize(reader(webp)), { format: 'webp', width: 200, height: 100 });
  // A JPEG whose frame header follows a large APP1 (EXIF) segment: only segment headers are read.
  const app1 = 65535; // the largest segment there is
  const jpeg = new Uint8Array(4 + app1 + 20);
  jpeg.set([0xff, 0xd8, 0xff, 0xe1, app1 >> 8, app1 & 255], 0);
  const sof = 2 + 2 + app1;
  jpeg.set([0xff, 0xc2, 0, 17, 8, ...[3000 >> 8, 3000 & 255], ...[4000 >> 8, 4000 & 255]], sof);
  const reads = [];
  const jpegRead = async (o, n) => { reads.push(n); return jpeg.subarray(o, o + n); };
  assert.deepEqual(await imageSize(jpegRead), { format: 'jpeg', width: 4000, height: 3000 });
  assert.ok(Math.max(...reads) <= 32, `read ${Math.max(...reads)} bytes at once`);
});

test('a file that is not an image is refused by name, with the formats that are read', async () => {
  const text = new TextEncoder().encode('name,label\nshirt,6\n'.repeat(4));
  await assert.rejects(imageSize(reader(text), 'notes.csv'), {
    name: 'NinEdgeError',
    message: 'notes.csv: not an image this page reads: expected PNG, JPEG, GIF, WebP or BMP',
  });
  await assert.rejects(imageSize(reader(Uint8Array.from([0xff, 0xd8, 0xff, 0xd9])), 'cut.jpg'), /cut.jpg: a JPEG file whose size could not be found/);
});

test('huge or extreme images are refused from their size, with the Python runtime\'s limits', () => {
  const limits = { max_pixels: 64000000, max_aspect_ratio: 64 };
  assert.throws(() => checkImageSize(100000, 70000, limits, 'bomb.png'), {
    message: 'bomb.png: image of 100000x70000 pixels exceeds the limit of 64,000,000; refused before decoding',
  });
  assert.throws(() => checkImageSize(2000000, 1, limits, 'line.png'), /line.png: image of 2000000x1 pixels has sides more than 64:1 apart/);
  checkImageSize(8000, 8000, limits, 'ok.png');
});

test('a descriptor the module cannot honour is refused before anything runs', () => {
  checkDescriptor(descriptor());
  const cases = [
    [{ format: 'other' }, /not a nin-edge web descriptor/],
    [{ format_version: 2 }, /format version 2; this nin-edge.mjs reads up to 1/],
    [{ preprocessing: { ...descriptor().preprocessing, std: [0] } }, /std must be positive, got \[0\]/],
    [{ preprocessing: { ...descriptor().preprocessing, scale: Number.NaN } }, /scale must be a positive finite number/],
    [{ preprocessing: { ...descriptor().preprocessing, mean: [0, 0] } }, /mean must be 1 or 1 finite numbers/],
    [{ preprocessing: { ...descriptor().preprocessing, resize: 'nearest' } }, /resize "nearest" is not one this module implements/],
    [{ limits: undefined }, /"limits" must give/],
    [{ models: {} }, /at least the fp32 model/],
  ];
  for (const [over, message] of cases) assert.throws(() => checkDescriptor(descriptor(over)), message);
});

test('preprocessing reads scale, mean and std from the descriptor and resizes bilinearly', () => {
  // A constant image stays constant through any resize; the value is (pixel * scale - mean) / std.
  const gray = { data: new Uint8Array(7 * 5).fill(51), width: 7, height: 5 };
  const x = preprocess(gray, descriptor());
  assert.equal(x.length, 16);
  for (const v of x) assert.ok(Math.abs(v - (51 / 255 - 0.5) / 0.25) < 1e-6, String(v));
  // RGBA: alpha is dropped and colour becomes ITU-R 601 luma for a grayscale model.
  const rgba = { data: Uint8Array.from({ length: 16 * 4 }, (_, i) => [200, 100, 50, 7][i % 4]), width: 4, height: 4 };
  const y = preprocess(rgba, descriptor({ preprocessing: { ...descriptor().preprocessing, mean: [0], std: [1] } }));
  const luma = Math.fround(200 * 0.299 + 100 * 0.587 + 50 * 0.114) / 255;
  for (const v of y) assert.ok(Math.abs(v - luma) < 1e-6);
  // A colour model takes channel means and stds in order.
  const rgb = descriptor({
    input: { name: 'input', channels: 3, size: 2, layout: 'NCHW' },
    preprocessing: { color: 'rgb', resize: 'bilinear', scale: 1, mean: [1, 2, 3], std: [1, 2, 4] },
  });
  const z = preprocess({ data: Uint8Array.from({ length: 4 * 3 }, (_, i) => [9, 10, 11][i % 3]), width: 2, height: 2 }, rgb);
  assert.deepEqual(Array.from(z), [8, 8, 8, 8, 4, 4, 4, 4, 2, 2, 2, 2]);
  assert.throws(() => preprocess({ data: new Uint8Array(10), width: 2, height: 2 }, descriptor()), /10 bytes for 2x2 pixels is not 1, 3 or 4 bytes per pixel/);
  assert.ok(Math.abs(softmax([1000, 1000]).reduce((a, b) => a + b) - 1) < 1e-12);
  assert.throws(() => checkTopK(0, 10), { message: 'topK must be a whole number from 1 to 10, got 0' });
  assert.throws(() => checkTopK(2.5, 10), /got 2.5/);
  checkTopK(10, 10);
});

test('a backend is checked against what the folder offers before the model is read, and WebGPU says why it is missing', async () => {
  assert.deepEqual(folderBackends(descriptor()), { wasm: ['fp32'] }); // a folder written before WebGPU
  const folder = await mkdtemp(path.join(os.tmpdir(), 'nin-edge-'));
  try {
    const write = (over) => writeFile(path.join(folder, 'nin-edge.json'), JSON.stringify(descriptor(over)));
    const open = (options) => openFolder(ort, pathToFileURL(folder), options);
    await write({ backends: { wasm: ['fp32', 'int8'] }, models: { fp32: { file: 'model.onnx' }, int8: { file: 'model.int8.onnx' } } });
    await assert.rejects(open({ backend: 'webgl' }), { message: 'backend "webgl" is not one of wasm, webgpu' });
    await assert.rejects(open({ backend: 'webgpu' }), { message: 'this folder has no WebGPU build of onnxruntime-web (export it with --web-webgpu); it offers: wasm' });
    await write({ backends: { wasm: ['fp32', 'int8'], webgpu: ['fp32'] }, models: { fp32: { file: 'model.onnx' }, int8: { file: 'model.int8.onnx' } } });
    await assert.rejects(open({ backend: 'webgpu', precision: 'int8' }), { message: 'WebGPU runs the fp32 model of this folder, not int8' });
    await assert.rejects(open({ backend: 'wasm', sessionOptions: { executionProviders: ['cpu'] } }), /give the backend or sessionOptions.executionProviders, not both/);
    await assert.rejects(open({ backend: 'webgpu' }), /cannot read .*model.onnx: ENOENT/); // past the checks: the model is read
  } finally {
    await rm(folder, { recursive: true });
  }
  await assert.rejects(webgpuAdapter(undefined), /this browser has no WebGPU \(navigator.gpu is missing/);
  await assert.rejects(webgpuAdapter({ requestAdapter: async () => null }), { message: 'this browser gives no WebGPU adapter (navigator.gpu.requestAdapter() returned none: no GPU it supports, or WebGPU blocked for this device)' });
  await assert.rejects(webgpuAdapter({ requestAdapter: async () => { throw new Error('lost'); } }), /requestAdapter\(\) failed: lost/);
  const adapter = { info: { vendor: 'google', architecture: 'swiftshader', description: '' } };
  assert.deepEqual(await webgpuAdapter({ requestAdapter: async () => adapter }), { adapter, vendor: 'google', architecture: 'swiftshader', description: '' });
});

const parity = process.env.NIN_EDGE_PARITY;
test('the module answers as the Python runtime does, image by image', { skip: parity ? false : 'NIN_EDGE_PARITY names no reference file (tests/test_web.py writes one)' }, async () => {
  const ref = JSON.parse(await readFile(parity, 'utf8'));
  for (const [precision, cases] of Object.entries(ref.cases)) {
    const classifier = await openFolder(ort, pathToFileURL(ref.folder), { precision });
    let worst = 0;
    for (const c of cases) {
      const image = { data: new Uint8Array(Buffer.from(c.pixels, 'base64')), width: c.width, height: c.height };
      const { top, probabilities } = await classifier.classify(image, 5, c.name);
      assert.equal(top[0].index, c.top1, `${precision} ${c.name}: top-1 ${top[0].index}, Python ${c.top1}`);
      assert.equal(top[0].label, ref.labels[c.top1]);
      for (let k = 0; k < probabilities.length; k++) worst = Math.max(worst, Math.abs(probabilities[k] - c.probs[k]));
    }
    assert.ok(worst <= ref.atol[precision], `${precision}: largest probability difference ${worst} > ${ref.atol[precision]}`);
    console.log(`parity ${precision}: ${cases.length} images, same top-1, largest probability difference ${worst.toExponential(2)}`);
  }
  // The model card's JavaScript example is this file's code, run here.
  const first = ref.cases.fp32[0];
  const top = await topClasses(ref.folder, { data: new Uint8Array(Buffer.from(first.pixels, 'base64')), width: first.width, height: first.height });
  assert.equal(top[0].index, first.top1);
});

test('a damaged model file is named before onnxruntime sees it', { skip: parity ? false : 'needs NIN_EDGE_PARITY' }, async () => {
  const ref = JSON.parse(await readFile(parity, 'utf8'));
  if (!ref.damaged) return;
  await assert.rejects(openFolder(ort, pathToFileURL(ref.damaged)), (err) => err instanceof NinEdgeError && /does not match the size and sha256 in nin-edge.json: it was altered or truncated/.test(err.message));
  await assert.rejects(openFolder(ort, pathToFileURL(path.join(ref.folder, 'no-such-folder'))), /cannot read .*nin-edge.json: ENOENT/);
});

// Hardening round 4 (issue 30): the descriptor is checked against its model at open time, and bad
// arguments are one NinEdgeError, never a TypeError from inside the module.

// A 2-class model (N,1,4,4) -> (N,2): GlobalAveragePool, Flatten, MatMul by [1, -1]; ONNX IR 8, opset 17.
const TWO_CLASS_ONNX = Buffer.from(
  'CAg6rwEKIgoFaW5wdXQSBnBvb2xlZCIRR2xvYmFsQXZlcmFnZVBvb2wKFwoGcG9vbGVkEgRmbGF0IgdGbGF0dGVuChkKBGZsYXQKAXcSBmxvZ2l0cyIGTWF0TXVsEgN0d28qEwgBCAIQASIIAACAPwAAgL9CAXdaIAoFaW5wdXQSFwoVCAESEQoDEgFOCgIIAQoCCAQKAggEYhkKBmxvZ2l0cxIPCg0IARIJCgMSAU4KAggCQgQKABAR',
  'base64',
);

async function twoClassFolder(labels) {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'nin-edge-'));
  const sha256 = createHash('sha256').update(TWO_CLASS_ONNX).digest('hex');
  await writeFile(path.join(folder, 'model.onnx'), TWO_CLASS_ONNX);
  const models = { fp32: { file: 'model.onnx', bytes: TWO_CLASS_ONNX.length, sha256 } };
  await writeFile(path.join(folder, 'nin-edge.json'), JSON.stringify(descriptor({ labels, models })));
  return folder;
}

test('a descriptor whose labels do not fit the model is blamed when the folder opens', async () => {
  const folder = await twoClassFolder(['only']);
  try {
    await assert.rejects(openFolder(ort, pathToFileURL(folder)), {
      name: 'NinEdgeError',
      message: 'nin-edge.json does not fit its model: model.onnx gives 2 class scores, nin-edge.json lists 1 label; export the folder again (or give "labels" one name per class)',
    });
  } finally {
    await rm(folder, { recursive: true });
  }
});

test('classify without an image and a folder given as a plain path are one NinEdgeError each', async () => {
  await assert.rejects(openFolder(ort, '/plain/path'), {
    name: 'NinEdgeError',
    message: 'the folder must be given as a URL, got "/plain/path": in a page an http(s) URL, in Node a file: URL (url.pathToFileURL(folder))',
  });
  const folder = await twoClassFolder(['a', 'b']);
  try {
    const classifier = await openFolder(ort, pathToFileURL(folder));
    await assert.rejects(classifier.classify(undefined), { name: 'NinEdgeError', message: 'image: expected an image { data, width, height } (an ImageData works), got undefined' });
    await assert.rejects(classifier.classify(null), { name: 'NinEdgeError', message: 'image: expected an image { data, width, height } (an ImageData works), got null' });
    // The default topK is 5, or every class of a model with fewer.
    const { top } = await classifier.classify({ data: new Uint8Array(16).fill(200), width: 4, height: 4 });
    assert.deepEqual(top.map((t) => t.label), ['a', 'b']);
  } finally {
    await rm(folder, { recursive: true });
  }
});
