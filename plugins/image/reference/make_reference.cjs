// Reference outputs of the original face-api networks (TF.js, CPU backend) on the test
// photos, for the candle re-implementation to match. Run from this folder:
//   npm ci --ignore-scripts && node make_reference.cjs ../../../assets
// It reads the same weights that `empathy assets fetch` unpacked and writes
// reference_outputs.json beside this script.
const fs = require('fs');
const path = require('path');
const { PNG } = require('pngjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const { tf } = faceapi;
const assets = path.resolve(process.argv[2] || path.join(__dirname, '../../../assets'));
const INPUT_SIZE = 416;
const SCORE_THRESHOLD = 0.5;
const round = (v) => Math.round(v * 1e6) / 1e6;

function weightMap(name) {
  const dir = path.join(assets, 'image/face-api');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, `${name}-weights_manifest.json`)));
  const specs = manifest.flatMap((group) => group.weights);
  const buffers = manifest.flatMap((group) => group.paths.map((p) => fs.readFileSync(path.join(dir, p))));
  const bytes = Buffer.concat(buffers);
  return tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), specs);
}

function readPng(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Int32Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i += 1) {
    for (let c = 0; c < 3; c += 1) rgb[i * 3 + c] = png.data[i * 4 + c];
  }
  return tf.tensor3d(rgb, [png.height, png.width, 3], 'int32');
}

async function photo(file) {
  const image = readPng(path.join(assets, 'photos', file));
  const raw = await faceapi.nets.tinyFaceDetector.forward(image, INPUT_SIZE);
  const options = new faceapi.TinyFaceDetectorOptions({ inputSize: INPUT_SIZE, scoreThreshold: SCORE_THRESHOLD });
  const detections = await faceapi.nets.tinyFaceDetector.locateFaces(image, options);
  const crops = await faceapi.extractFaceTensors(image, detections);
  const faces = [];
  for (let i = 0; i < detections.length; i += 1) {
    const box = detections[i].box;
    const features = await faceapi.nets.faceExpressionNet.faceFeatureExtractor.forward(crops[i]);
    const probabilities = await faceapi.nets.faceExpressionNet.forward(crops[i]);
    faces.push({
      box: [box.x, box.y, box.width, box.height].map(round),
      score: round(detections[i].score),
      features: Array.from(await features.data()).map(round),
      probabilities: Array.from(await probabilities.data()).map(round),
    });
  }
  return { file, detector_output: Array.from(await raw.data()).map(round), faces };
}

(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
  faceapi.nets.tinyFaceDetector.loadFromWeightMap(weightMap('tiny_face_detector_model'));
  faceapi.nets.faceExpressionNet.loadFromWeightMap(weightMap('face_expression_model'));
  const result = {
    made_by: `face-api ${faceapi.version} on TF.js ${tf.version_core} (${tf.getBackend()} backend)`,
    input_size: INPUT_SIZE,
    score_threshold: SCORE_THRESHOLD,
    expression_labels: ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'],
    photos: [await photo('astronaut.png'), await photo('coffee.png')],
  };
  const out = path.join(__dirname, 'reference_outputs.json');
  fs.writeFileSync(out, `${JSON.stringify(result)}\n`);
  for (const p of result.photos) {
    console.log(p.file, p.faces.map((f) => ({ box: f.box, score: f.score, probabilities: f.probabilities })));
  }
})();
