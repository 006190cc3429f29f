// Classify one image with the model of a nin-edge web folder, in Node (npm install onnxruntime-node).
// In a page the same module runs on onnxruntime-web: import * as ort from './ort.wasm.min.mjs' and
// pass new URL('./', location.href) as the folder; an ImageData from a canvas is a valid image.
import * as ort from 'onnxruntime-node';
import { pathToFileURL } from 'node:url';
import { openFolder } from './nin-edge.mjs';

/** The top 3 classes (fewer where the model has fewer) of `image` ({ data: Uint8Array, width, height }, 1, 3 or 4 bytes per pixel). */
export async function topClasses(folder, image, precision = 'fp32') {
  const classifier = await openFolder(ort, pathToFileURL(folder), { precision });
  const { top, ms } = await classifier.classify(image, Math.min(3, classifier.labels.length));
  console.log(top.map((t) => `${t.label} ${(100 * t.probability).toFixed(1)}%`).join(', '), `(${ms.toFixed(1)} ms)`);
  return top; // [{ index, label, probability }, ...], best first
}
