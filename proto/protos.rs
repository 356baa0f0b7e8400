// The empathy.v1 files, relative to `proto/`: `include!`d by both build scripts (this
// crate's messages, `proto/grpc`'s stubs) so that they compile the same list.
const PROTOS: [&str; 6] = [
    "empathy/v1/common.proto",
    "empathy/v1/encoder.proto",
    "empathy/v1/situation.proto",
    "empathy/v1/empathy.proto",
    "empathy/v1/trainer.proto",
    "empathy/v1/keys.proto",
];
