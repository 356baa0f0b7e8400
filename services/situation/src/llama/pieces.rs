//! The generator's parts against each other: prompts in pieces, batching, likelihoods, AMX.

use super::*;

/// A prompt prefilled in two pieces (the engine's shared prefix, then the rest,
/// through a forked cache) or token by token (the decoding step's own loops) gives the
/// logits of one prefill (candle's ops). (f32 and our Q4 kernel: the GGUF path
/// quantizes activations per call, which moves the logits by up to ~1 between call
/// shapes.)
#[test]
fn prefill_in_pieces_matches_whole() {
    for format in [WeightFormat::F32, WeightFormat::Q4] {
        prefill_in_pieces_matches_whole_for(format);
    }
}

fn prefill_in_pieces_matches_whole_for(format: WeightFormat) {
    let (model, _) = super::tests::model(format);
    let prompt: Vec<u32> = (300..320).collect();
    let whole = model.prefill(&prompt, &mut model.new_cache(64)).unwrap();
    let diff = |a: &Tensor| super::tests::max_abs_diff(&whole, a);
    for cut in [1usize, 10, 19] {
        let mut shared = model.new_cache(cut);
        model.prefill(&prompt[..cut], &mut shared).unwrap();
        let mut c = model.fork_cache(&shared, 64).unwrap();
        let p = model.prefill(&prompt[cut..], &mut c).unwrap();
        assert!(
            diff(&p) < 1e-3,
            "{format:?}, cut {cut}: pieces differ by {}",
            diff(&p)
        );
        let mut c = model.fork_cache(&shared, 64).unwrap();
        let mut last = None;
        for &t in &prompt[cut..] {
            last = Some(model.step(&[t], &mut [&mut c]).unwrap().i(0).unwrap());
        }
        let last = last.unwrap();
        assert!(
            diff(&last) < 1e-3,
            "{format:?}, cut {cut}: steps differ by {}",
            diff(&last)
        );
    }
}

/// With f32 and Q4 weights too, a sequence's logits do not depend on what else is in the
/// batch nor on its place in it (so a seed gives the same situations under any load).
#[test]
fn batching_is_bit_exact() {
    for format in [WeightFormat::F32, WeightFormat::Q4] {
        batching_is_bit_exact_for(format);
    }
}

fn batching_is_bit_exact_for(format: WeightFormat) {
    let (model, _) = super::tests::model(format);
    let mut shared = model.new_cache(8);
    model
        .prefill(&[300, 301, 302, 303, 304, 305, 306, 307], &mut shared)
        .unwrap();
    let alone = |token: u32| {
        let mut c = model.fork_cache(&shared, 16).unwrap();
        model
            .step(&[token], &mut [&mut c])
            .unwrap()
            .i(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    for b in [2usize, 3, 5, 8, 16] {
        let mut caches: Vec<SeqCache> = (0..b)
            .map(|_| model.fork_cache(&shared, 16).unwrap())
            .collect();
        let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
        let tokens: Vec<u32> = (0..b as u32).map(|i| 400 + 7 * i).collect();
        let got = model.step(&tokens, &mut refs).unwrap();
        for row in [0, b / 2, b - 1] {
            assert_eq!(
                alone(tokens[row]),
                got.i(row).unwrap().to_vec1::<f32>().unwrap(),
                "{format:?}: row {row} of a batch of {b} differs from the sequence alone"
            );
        }
    }
}

/// With bf16 tiles for prompts and scored texts (AMX, or AVX-512 BF16), the next token
/// after a prompt and a continuation's likelihood stay what the exact Q4 kernel gives,
/// to bf16's rounding.
#[test]
fn amx_passes_stay_close_to_q4() {
    if !empathy_simd::amx::can_multiply() {
        eprintln!("skipped: neither AMX nor AVX-512 BF16 on this CPU");
        return;
    }
    let (exact, tok) = tests::model(WeightFormat::Q4);
    let (tiles, _) = tests::model(WeightFormat::Q4Amx);
    let prompts = [
        "My dog died yesterday. I feel",
        "The train was cancelled and I missed the interview, so",
    ];
    for prompt in prompts {
        let prefix = tok.encode(prompt).unwrap();
        let next = |m: &Model| {
            let mut cache = m.new_cache(prefix.len());
            argmax(&m.prefill(&prefix, &mut cache).unwrap()).unwrap()
        };
        assert_eq!(next(&tiles), next(&exact), "{prompt:?}");
        let target = tok.encode(" so sad and alone").unwrap();
        let (a, b) = (
            tiles.log_likelihood(&prefix, &target).unwrap(),
            exact.log_likelihood(&prefix, &target).unwrap(),
        );
        assert!(
            (a - b).abs() < 0.05 * b.abs().max(1.0),
            "{prompt:?}: {a} vs {b}"
        );
    }
}

/// The likelihood of a continuation in one pass equals the product of the
/// next-token probabilities decoding it one token at a time.
#[test]
fn log_likelihood_matches_step_by_step_decoding() {
    let (model, tok) = super::tests::model(WeightFormat::F32);
    let prefix = tok.encode("My dog died yesterday. I feel").unwrap();
    let target = tok.encode(" so sad and alone").unwrap();
    let mut cache = model.new_cache(prefix.len() + target.len());
    let mut logits = model.prefill(&prefix, &mut cache).unwrap();
    let mut expected = 0f32;
    for &t in &target {
        let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        expected += log_p.get(t as usize).unwrap().to_scalar::<f32>().unwrap();
        logits = model
            .step(&[t], &mut [&mut cache])
            .unwrap()
            .squeeze(0)
            .unwrap();
    }
    let got = model.log_likelihood(&prefix, &target).unwrap();
    assert!((got - expected).abs() < 1e-2, "{got} vs {expected}");
    // A fitting continuation is likelier than an unrelated one of the same kind.
    let odd = tok.encode(" so purple and square").unwrap();
    assert!(got > model.log_likelihood(&prefix, &odd).unwrap());
}
