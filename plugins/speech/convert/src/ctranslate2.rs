//! Reading a CTranslate2 `model.bin` (binary version 6): a small header, then named
//! tensors, then aliases. Layout as written by `ModelSpec._serialize` in CTranslate2's
//! python/ctranslate2/specs/model_spec.py.

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{Context, bail, ensure};

/// The element types CTranslate2 writes (`ctranslate2::DataType`, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_id(id: u8) -> anyhow::Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            other => bail!("unknown CTranslate2 data type id {other}"),
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One named tensor: its shape and where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Variable {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub bytes: Range<usize>,
}

impl Variable {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The parsed index of a model file; the bytes stay in the caller's buffer.
#[derive(Debug)]
pub struct Model {
    /// The spec's name, e.g. "WhisperSpec".
    pub spec: String,
    pub variables: HashMap<String, Variable>,
}

const BINARY_VERSION: u32 = 6;

impl Model {
    pub fn parse(buf: &[u8]) -> anyhow::Result<Self> {
        let mut r = Reader { buf, pos: 0 };
        let version = r.u32()?;
        ensure!(
            version == BINARY_VERSION,
            "CTranslate2 binary version {version} is not supported (expected {BINARY_VERSION})"
        );
        let spec = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()?;
        let mut variables = HashMap::with_capacity(count as usize);
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()?;
            let shape = (0..rank)
                .map(|_| r.u32().map(|d| d as usize))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let dtype = DType::from_id(r.u8()?).with_context(|| format!("variable {name}"))?;
            let len = r.u32()? as usize;
            let bytes = r.skip(len).with_context(|| format!("variable {name}"))?;
            let var = Variable {
                shape,
                dtype,
                bytes,
            };
            ensure!(
                var.elements() * dtype.size() == len,
                "variable {name}: {len} bytes do not fit its shape {:?}",
                var.shape
            );
            variables.insert(name, var);
        }
        let aliases = r.u32()?;
        for _ in 0..aliases {
            let alias = r.string()?;
            let target = r.string()?;
            let var = variables
                .get(&target)
                .with_context(|| format!("alias {alias} names a missing variable {target}"))?
                .clone();
            variables.insert(alias, var);
        }
        Ok(Self { spec, variables })
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&Variable> {
        self.variables
            .get(name)
            .with_context(|| format!("the model has no variable {name}"))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> anyhow::Result<Range<usize>> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .context("the file ends early (truncated, or not a CTranslate2 model)")?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn array<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        let range = self.skip(N)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }

    fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A u16 length (counting a trailing NUL), then the bytes and the NUL.
    fn string(&mut self) -> anyhow::Result<String> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        let range = self.skip(len)?;
        let bytes = &self.buf[range];
        let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        Ok(String::from_utf8(text.to_vec())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    #[test]
    fn parses_variables_and_aliases() {
        let mut f = Vec::new();
        f.extend(6u32.to_le_bytes());
        string(&mut f, "WhisperSpec");
        f.extend(3u32.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        string(&mut f, "a/weight");
        f.push(2);
        f.extend(2u32.to_le_bytes());
        f.extend(3u32.to_le_bytes());
        f.push(4);
        f.extend(12u32.to_le_bytes());
        f.extend([0u8; 12]);
        f.extend(1u32.to_le_bytes());
        string(&mut f, "b/weight");
        string(&mut f, "a/weight");

        let model = Model::parse(&f).expect("parses");
        assert_eq!(model.spec, "WhisperSpec");
        let a = model.get("a/weight").expect("a");
        assert_eq!((a.shape.as_slice(), a.dtype), (&[2, 3][..], DType::F16));
        assert_eq!(model.get("b/weight").expect("alias").bytes, a.bytes);

        let err = Model::parse(&f[..f.len() - 20]).expect_err("truncated");
        assert!(format!("{err:#}").contains("ends early"), "{err:#}");
    }
}
