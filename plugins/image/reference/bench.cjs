// The baseline for the image bench: face-api 1.7.15 on TF.js (WASM backend, the
// fastest that runs in Node without native binaries) detecting faces and reading
// their expressions on the pixels that `examples/image_bench.rs` wrote. Prints one JSON line.
//   node bench.cjs OUT_DIR [REPS] [BACKEND]
const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const { tf } = faceapi;
const [dir, repsArg, backend = 'wasm'] = process.argv.slice(2);
const reps = Number(repsArg || 30);
const assets = path.resolve(__dirname, '../../../assets/image/face-api');

function weightMap(name) {
  const manifest = JSON.parse(fs.readFileSync(path.join(assets, `${name}-weights_manifest.json`)));
  const bytes = Buffer.concat(manifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(assets, p)))));
  return tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), manifest.flatMap((g) => g.weights));
}

(async () => {
  if (backend === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(`${path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`);
    wasm.setThreadsCount?.(Number(process.env.THREADS || 2));
  }
  await tf.setBackend(backend);
  await tf.ready();
  faceapi.nets.tinyFaceDetector.loadFromWeightMap(weightMap('tiny_face_detector_model'));
  faceapi.nets.faceExpressionNet.loadFromWeightMap(weightMap('face_expression_model'));
  const pixels = new Int32Array(fs.readFileSync(path.join(dir, 'bench.rgb')));
  const image = tf.tensor3d(pixels, [480, 640, 3], 'int32');
  const options = new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 });
  const run = () => faceapi.detectAllFaces(image, options).withFaceExpressions();
  const faces = (await run()).length;
  const secs = [];
  for (let i = 0; i < reps; i += 1) {
    const start = process.hrtime.bigint();
    await run();
    secs.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  secs.sort((a, b) => a - b);
  const median = secs[Math.floor(secs.length / 2)];
  console.log(JSON.stringify({
    impl: `face-api ${faceapi.version} on TF.js ${tf.version_core} (${tf.getBackend()})`,
    faces,
    median_ms: median * 1000,
    images_per_s: 1 / median,
  }));
})();
