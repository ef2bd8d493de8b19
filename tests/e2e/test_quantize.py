#!/usr/bin/env python3
"""End-to-end tests of `anvil quantize` on dummy:tiny-llama: every scheme writes a GGUF that
`anvil run` loads and generates from; the quantized model's logits equal those of its own
dequantized copy (the kernels honour the scales) and stay close to the f32 model's (fp8, w8a8,
q8_0); NumPy, reading the file independently, finds every quantized element within its scheme's
bound of the source weight; the calibrated schemes (w4a16-gptq, w8a8 SmoothQuant) report their
progress, record their metadata, fold SmoothQuant into the norms (checked in NumPy) and, on
stories260K, GPTQ is closer to the f32 model than round-to-nearest; truncated files, wrong-shaped
or missing scale tensors and options a scheme does not take fail with one clear error.

Run by CTest as: test_quantize.py --anvil BIN --shared-data DIR --tmp DIR
"""
import argparse
import json
import os
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_tensors  # noqa: E402

ARGS = None
MODEL = "dummy:tiny-llama"
PROMPT = "1,70,80,90,100,7,300,12"  # 8 tokens: the GEMV path (prefill GEMM starts at 16)
LONG_PROMPT = ",".join(str(5 + 13 * i) for i in range(24))  # 24 tokens: the oneDNN path
LINEAR = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")

# name -> (quantize arguments, weight type, logits relative error bound against the f32 model or
# None where 4-bit noise on random weights makes the comparison meaningless)
SCHEMES = {
    "fp8": (["--scheme", "fp8"], "F8_E4M3", 0.25),
    "fp8-per-tensor": (["--scheme", "fp8", "--per-tensor"], "F8_E4M3", 0.25),
    "fp8-dynamic": (["--scheme", "fp8-dynamic"], "F8_E4M3", 0.25),
    "fp8-dynamic-per-tensor": (["--scheme", "fp8-dynamic", "--per-tensor"], "F8_E4M3", 0.25),
    "w8a8": (["--scheme", "w8a8"], "I8", 0.08),
    "w4a16-rtn": (["--scheme", "w4a16-rtn", "--group", "32"], "I4", None),
    "w4a16-rtn-asym": (["--scheme", "w4a16-rtn", "--group", "32", "--asym"], "I4", None),
    "q8_0": (["--scheme", "q8_0"], "Q8_0", 0.08),
    "q4_0": (["--scheme", "q4_0"], "Q4_0", None),
}


def run(*args, env=None, timeout=300):
    proc = subprocess.run([ARGS.anvil, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    return proc.returncode, proc.stdout, proc.stderr


def tmp_path(name):
    return os.path.join(ARGS.tmp, name)


def logits(model, prompt, env=None, extra=()):
    path = tmp_path(model.replace("/", "_").replace(":", "_") + f".{len(prompt)}.{id(env)}.logits")
    code, _, err = run("run", "--model", model, "--prompt-tokens", prompt, "-n", "1", "--logits-out", path, *extra,
                       env=env)
    assert code == 0, err
    return np.fromfile(path, dtype="<f4").astype(np.float64)


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


class Fixture:
    """The f32 source (as GGUF, for NumPy) and each scheme's file, built once."""
    built = False

    @classmethod
    def build(cls):
        if cls.built:
            return
        cls.f32_path = tmp_path("f32.gguf")
        code, _, err = run("convert", "--model", MODEL, "--out", cls.f32_path)
        assert code == 0, err
        cls.f32 = gguf_tensors.read(cls.f32_path)
        cls.files, cls.summaries = {}, {}
        for name, (args, _, _) in SCHEMES.items():
            path = tmp_path(name + ".gguf")
            code, out, err = run("quantize", "--model", MODEL, *args, "--out", path)
            assert code == 0, f"{name}: {err}"
            cls.files[name], cls.summaries[name] = path, out
        cls.built = True


class QuantizeAndRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        Fixture.build()

    def test_summary_reports_tensors_bits_and_error(self):
        for name, out in Fixture.summaries.items():
            with self.subTest(name):
                self.assertIn("quantized:  14 tensors", out)
                self.assertIn("bits per weight", out)
                self.assertIn("relative RMS round-trip error", out)
        self.assertIn("(group 32, asymmetric)", Fixture.summaries["w4a16-rtn-asym"])
        self.assertIn("(per-tensor)", Fixture.summaries["fp8-per-tensor"])
        self.assertIn("fp8-dynamic (per-channel, activations dynamic-per-token-fp8)", Fixture.summaries["fp8-dynamic"])
        self.assertIn("fp8-dynamic (per-tensor, activations dynamic-per-token-fp8)",
                      Fixture.summaries["fp8-dynamic-per-tensor"])

    def test_every_scheme_runs(self):
        for name, path in Fixture.files.items():
            with self.subTest(name):
                code, out, err = run("run", "--model", path, "--prompt-tokens", "1,2,3", "-n", "8", "--temp", "0",
                                     "--print-token-ids")
                self.assertEqual(code, 0, err)
                ids = out.strip().splitlines()[-1].split(",")
                self.assertEqual(len(ids), 8, out)

    def test_quantized_logits_equal_the_dequantized_models(self):
        # `anvil convert --type f32` dequantizes through the scales: the same weights in f32. On the
        # GEMV path (8 tokens) W8A16/W4A16 round activations to bf16 (2^-9 relative each, ~5e-3 in
        # these logits); W8A8 quantizes them per token. The 24-token prompt runs oneDNN (bf16
        # compute with AVX512-BF16).
        # With ANVIL_GEMM=reference every scheme is the same f32 arithmetic, except fp8-dynamic, whose
        # activations every path (the reference too) rounds to E4M3 per token, while its dequantized
        # copy is W8A16 (test_fp8_dynamic_* check its paths against each other).
        for name, path in Fixture.files.items():
            if name.startswith("fp8-dynamic"):
                continue
            with self.subTest(name):
                dequantized = tmp_path(name + "-dequantized.gguf")
                code, _, err = run("convert", "--model", path, "--type", "f32", "--out", dequantized)
                self.assertEqual(code, 0, err)
                reference = {"ANVIL_GEMM": "reference"}
                self.assertLess(relative_error(logits(path, PROMPT, reference), logits(dequantized, PROMPT, reference)),
                                1e-5)
                gemv_bound = 0.05 if name == "w8a8" else 2e-2
                if name in ("q8_0", "q4_0"):
                    gemv_bound = 0.05  # GGML blocks: int8 activations per 32
                self.assertLess(relative_error(logits(path, PROMPT), logits(dequantized, PROMPT)), gemv_bound)
                self.assertLess(relative_error(logits(path, LONG_PROMPT), logits(dequantized, LONG_PROMPT)), 0.05)

    def test_logits_stay_close_to_the_f32_model(self):
        # Random weights have small logit margins, so greedy ids may flip after a few tokens;
        # the logits themselves are the robust check.
        reference = logits(MODEL, PROMPT)
        for name, (_, _, bound) in SCHEMES.items():
            if bound is None:
                continue
            with self.subTest(name):
                self.assertLess(relative_error(logits(Fixture.files[name], PROMPT), reference), bound)

    def test_fp8_dynamic_paths_agree_and_differ_from_w8a16(self):
        # Same weights as fp8 (the flag only changes the activations), so the logits move by the
        # activation rounding alone (~7e-2 here); the GEMV path (8 tokens), oneDNN (24, in bf16 on
        # the E4M3 values, exact) and the reference agree to f32 rounding (~3e-7), give or take a
        # code that flips where a sum in another order lands across a rounding boundary (~3e-4).
        for name, w8a16 in (("fp8-dynamic", "fp8"), ("fp8-dynamic-per-tensor", "fp8-per-tensor")):
            with self.subTest(name):
                path = Fixture.files[name]
                reference = {"ANVIL_GEMM": "reference"}
                ref_short, ref_long = logits(path, PROMPT, reference), logits(path, LONG_PROMPT, reference)
                self.assertLess(relative_error(logits(path, PROMPT), ref_short), 2e-3)
                self.assertLess(relative_error(logits(path, PROMPT, {"ANVIL_GEMM": "gemv"}), ref_short), 2e-3)
                self.assertLess(relative_error(logits(path, LONG_PROMPT), ref_long), 2e-3)
                self.assertLess(relative_error(logits(path, LONG_PROMPT, {"ANVIL_GEMM": "onednn_f32"}), ref_long), 2e-3)
                gap = relative_error(logits(Fixture.files[w8a16], PROMPT, reference), ref_short)
                self.assertGreater(gap, 2e-2, "E4M3 activations should move the logits")
                self.assertLess(gap, 0.2)

    def test_fp8_dynamic_survives_the_gguf_round_trip(self):
        q = gguf_tensors.read(Fixture.files["fp8-dynamic"])
        self.assertEqual(q.value("anvil.quantization.scheme"), "fp8-dynamic")
        self.assertEqual(q.value("anvil.quantization.activations"), "dynamic-per-token-fp8")
        self.assertNotIn("anvil.quantization.activations", gguf_tensors.read(Fixture.files["fp8"]).metadata)
        # The codes and scales are fp8's, byte for byte.
        fp8 = gguf_tensors.read(Fixture.files["fp8"])
        for tname, tensor in q.tensors.items():
            self.assertEqual(tensor.raw, fp8.tensors[tname].raw, tname)
        # Loaded, re-written (anvil convert keeps the types) and loaded again: the flag is still on.
        copy = tmp_path("fp8-dynamic-copy.gguf")
        code, _, err = run("convert", "--model", Fixture.files["fp8-dynamic"], "--out", copy)
        self.assertEqual(code, 0, err)
        self.assertEqual(gguf_tensors.read(copy).value("anvil.quantization.activations"), "dynamic-per-token-fp8")
        reference = {"ANVIL_GEMM": "reference"}
        self.assertLess(relative_error(logits(copy, PROMPT, reference),
                                       logits(Fixture.files["fp8-dynamic"], PROMPT, reference)), 1e-6)
        code, out, err = run("info", "--model", copy, "--json", "--no-measure")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["model"]["quantization"]["activations"], "dynamic-per-token-fp8")
        code, out, err = run("info", "--model", copy, "--no-measure")
        self.assertIn("quantization: fp8-dynamic (per-channel, symmetric, activations dynamic-per-token-fp8)", out)
        # Quantized at load (`run -q`) it is the same model as the file.
        self.assertLess(relative_error(logits(MODEL, PROMPT, None, ["-q", "fp8-dynamic"]),
                                       logits(Fixture.files["fp8-dynamic"], PROMPT)), 1e-6)

    def test_fp8_dynamic_activation_record_is_checked(self):
        g = gguf_tensors.read(Fixture.files["fp8-dynamic"])
        g.metadata["anvil.quantization.activations"] = (gguf_tensors.T_STRING, "static-per-tensor-fp8")
        path = tmp_path("fp8-dynamic-unknown-activations.gguf")
        gguf_tensors.write(path, g)
        code, _, err = run("run", "--model", path, "--prompt-tokens", "1")
        self.assertEqual(code, 1, err)
        self.assertIn("anvil.quantization.activations 'static-per-tensor-fp8' is not an activation quantization "
                      "anvil runs", err)

    def test_info_shows_the_scheme(self):
        code, out, err = run("info", "--model", Fixture.files["w4a16-rtn-asym"], "--no-measure")
        self.assertEqual(code, 0, err)
        self.assertIn("quantization: w4a16-rtn (group 32, asymmetric)", out)
        code, out, err = run("info", "--model", Fixture.files["w8a8"], "--json", "--no-measure")
        self.assertEqual(code, 0, err)
        self.assertIn('"scheme": "w8a8"', out)


class NumpyDequantization(unittest.TestCase):
    """Reads the files with gguf_tensors.py (written from docs/FORMATS.md) and checks each element
    against the f32 source within its scheme's bound."""

    @classmethod
    def setUpClass(cls):
        Fixture.build()

    def check_scheme(self, name, bound_fn):
        q = gguf_tensors.read(Fixture.files[name])
        self.assertEqual(q.value("anvil.quantization.scheme"), name.replace("-per-tensor", "").replace("-asym", ""))
        weight_type = SCHEMES[name][1]
        checked = 0
        for tname, tensor in q.tensors.items():
            if tname.endswith("_scale") or tname.endswith("_zero"):
                continue
            source = Fixture.f32.tensors[tname]
            if not any(f".{layer}.weight" in tname for layer in LINEAR):
                # Embeddings, norms and the output layer are left as they were.
                self.assertEqual(tensor.type_name, "F32", tname)
                self.assertEqual(tensor.raw, source.raw, tname)
                continue
            self.assertEqual(tensor.type_name, weight_type, tname)
            w = source.floats().astype(np.float64)
            dequantized, scale = gguf_tensors.dequantize(q, tname)
            err = np.abs(dequantized - w)
            bound = bound_fn(w, scale)
            worst = np.argmax(err - bound)
            self.assertTrue(np.all(err <= bound), f"{name} {tname}: element {np.unravel_index(worst, w.shape)} "
                                                   f"off by {err.flat[worst]:.3g}, bound {bound.flat[worst]:.3g}")
            checked += 1
        self.assertEqual(checked, 14)
        return q

    def test_fp8_within_e4m3_rounding(self):
        def bound(w, s):
            scaled = np.abs(w) / np.where(s > 0, s, 1)
            return np.maximum(scaled / 16, 2.0 ** -10) * s + 1e-6 * np.abs(w)
        for name in ("fp8", "fp8-per-tensor", "fp8-dynamic", "fp8-dynamic-per-tensor"):
            q = self.check_scheme(name, bound)
            scale = q.tensors["blk.0.ffn_up.weight_scale"].floats()
            self.assertEqual(scale.shape, (160, 1))
            w = Fixture.f32.tensors["blk.0.ffn_up.weight"].floats()
            if not name.endswith("per-tensor"):
                np.testing.assert_allclose(scale[:, 0], np.abs(w).max(axis=1) / 448, rtol=1e-6)
            else:
                self.assertTrue(np.all(scale == scale[0, 0]))

    def test_int8_within_half_a_step(self):
        q = self.check_scheme("w8a8", lambda w, s: s / 2 * (1 + 1e-6) + 1e-7 * np.abs(w))
        codes = gguf_tensors.codes(q.tensors["blk.1.attn_v.weight"])
        self.assertLessEqual(np.abs(codes).max(), 127)

    def test_int4_within_half_a_step(self):
        for name in ("w4a16-rtn", "w4a16-rtn-asym"):
            q = self.check_scheme(name, lambda w, s: s / 2 * (1 + 1e-5) + 1e-7 * np.abs(w))
            self.assertEqual(q.tensors["blk.0.ffn_down.weight_scale"].shape, (64, 160 // 32))
            self.assertEqual(q.value("anvil.quantization.group_size"), 32)
            has_zero = "blk.0.ffn_down.weight_zero" in q.tensors
            self.assertEqual(has_zero, name.endswith("asym"))
            self.assertEqual(q.value("anvil.quantization.symmetric"), not name.endswith("asym"))


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        Fixture.build()

    def expect_error(self, args, must_contain):
        code, _, err = run(*args)
        lines = [l for l in err.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("anvil: error:")]
        self.assertEqual(code, 1, err)
        self.assertEqual(len(errors), 1, err)
        self.assertEqual(lines[-1], errors[0], err)
        self.assertIn(must_contain, errors[0])

    def rewritten(self, name, edit):
        """fp8.gguf with `edit(tensors)` applied to its tensor dict, written as a new file."""
        g = gguf_tensors.read(Fixture.files["fp8"])
        edit(g.tensors)
        path = tmp_path(name)
        gguf_tensors.write(path, g)
        return path

    def test_truncated_file(self):
        with open(Fixture.files["w4a16-rtn"], "rb") as f:
            data = f.read()
        path = tmp_path("truncated.gguf")
        with open(path, "wb") as f:
            f.write(data[: len(data) * 2 // 3])
        self.expect_error(["run", "--model", path, "--prompt-tokens", "1"], "truncated")

    def test_scale_of_the_wrong_shape(self):
        def halve_rows(tensors):
            t = tensors["blk.0.attn_q.weight_scale"]
            rows, groups = t.shape
            tensors[t.name] = gguf_tensors.Tensor(t.name, t.type_id, (rows // 2, groups), t.raw[: len(t.raw) // 2])
        path = self.rewritten("bad-scale-shape.gguf", halve_rows)
        self.expect_error(["run", "--model", path, "--prompt-tokens", "1"],
                          "tensor blk.0.attn_q.weight_scale has shape (32, 1); for weight blk.0.attn_q.weight "
                          "(64, 64) it must be (64, G)")

    def test_missing_scale(self):
        path = self.rewritten("no-scale.gguf", lambda tensors: tensors.pop("blk.1.ffn_gate.weight_scale"))
        self.expect_error(["run", "--model", path, "--prompt-tokens", "1"],
                          "blk.1.ffn_gate.weight (F8_E4M3 (160, 64)) has no scales")

    def test_non_finite_scale(self):
        def poison(tensors):
            t = tensors["blk.0.attn_k.weight_scale"]
            raw = bytearray(t.raw)
            raw[4:8] = np.array([np.inf], dtype="<f4").tobytes()
            tensors[t.name] = gguf_tensors.Tensor(t.name, t.type_id, t.shape, bytes(raw))
        path = self.rewritten("inf-scale.gguf", poison)
        self.expect_error(["run", "--model", path, "--prompt-tokens", "1"], "scale (row 1, group 0) is not finite")

    def test_options_and_shapes_a_scheme_does_not_take(self):
        out = tmp_path("never.gguf")
        base = ["quantize", "--model", MODEL, "--out", out]
        self.expect_error(base + ["--scheme", "w4a16-rtn"], "not a multiple of --group 128; try --group 32")
        self.expect_error(base + ["--scheme", "q4_k"], "not a multiple of the Q4_K block of 256")
        self.expect_error(base + ["--scheme", "w4a16-gptq"], "--scheme w4a16-gptq needs calibration data")
        self.expect_error(base + ["--scheme", "w8a8", "--smoothquant"], "SmoothQuant needs calibration data")
        self.expect_error(base + ["--scheme", "fp8", "--calib", "calib.txt"], "--calib: scheme fp8 takes no")
        self.expect_error(base + ["--scheme", "fp8", "--smoothquant", "--calib", "c.txt"],
                          "--smoothquant applies to w8a8 only")
        self.expect_error(base + ["--scheme", "w8a8", "--alpha", "0.5"], "--alpha applies to w8a8 --smoothquant only")
        self.expect_error(base + ["--scheme", "w4a16-rtn", "--group", "32", "--act-order"],
                          "--act-order applies to w4a16-gptq only")
        self.expect_error(base + ["--scheme", "w4a16-gptq", "--group", "32", "--calib", tmp_path("missing.txt")],
                          "missing.txt: cannot open the calibration text")
        self.expect_error(base + ["--scheme", "w4a16-gptq", "--group", "32", "--calib", "a", "--calib-tokens", "b"],
                          "give one calibration source")
        self.expect_error(base + ["--scheme", "w4a16-rtn", "--group", "32", "--ignore", "ffn_dwn"],
                          "--ignore ffn_dwn matches none of the linear weights")
        self.expect_error(base + ["--scheme", "fp8", "--group", "32"], "--group applies to w4a16-rtn and w4a16-gptq only")
        self.expect_error(base + ["--scheme", "w4a16-rtn", "--group", "48"], "must be 32, 64 or 128")
        self.expect_error(base + ["--scheme", "int3"], "unknown scheme 'int3'")
        self.expect_error(["convert", "--model", MODEL, "--out", out, "--type", "i8"], "use `anvil quantize")
        self.assertFalse(os.path.exists(out))


def shakespeare():
    return os.path.join(ARGS.shared_data, "text", "tinyshakespeare.txt")


CALIBRATED = {
    "w4a16-gptq": ["--scheme", "w4a16-gptq", "--group", "32"],
    "w4a16-gptq-asym-act-order": ["--scheme", "w4a16-gptq", "--group", "32", "--asym", "--act-order"],
    "w4a16-gptq-act-order-dynamic": ["--scheme", "w4a16-gptq", "--group", "32", "--act-order", "--dynamic-groups"],
    "w8a8-smoothquant": ["--scheme", "w8a8", "--smoothquant", "--alpha", "0.6"],
}


class CalibratedSchemes(unittest.TestCase):
    """GPTQ and SmoothQuant on dummy:tiny-llama, calibrated on 8 x 64 tokens of Shakespeare."""

    @classmethod
    def setUpClass(cls):
        Fixture.build()
        cls.files, cls.stdout, cls.stderr = {}, {}, {}
        for name, args in CALIBRATED.items():
            path = tmp_path(name + ".gguf")
            code, out, err = run("quantize", "--model", MODEL, *args, "--calib", shakespeare(), "--calib-samples", "8",
                                 "--calib-seq-len", "64", "--out", path)
            assert code == 0, f"{name}: {err}"
            cls.files[name], cls.stdout[name], cls.stderr[name] = path, out, err

    def test_progress_and_summary(self):
        for name in CALIBRATED:
            with self.subTest(name):
                err, out = self.stderr[name], self.stdout[name]
                self.assertIn("anvil: calibration: 8 samples x 64 tokens from", err)
                self.assertIn("anvil: layer 1/2 (", err)
                self.assertIn("anvil: layer 2/2 (", err)
                self.assertIn("quantized:  14 tensors", out)
                self.assertIn("calibration: 8 samples x 64 tokens", out)
        self.assertIn("scheme:     w4a16-gptq (group 32, symmetric)", self.stdout["w4a16-gptq"])
        self.assertIn("(group 32, asymmetric, act-order)", self.stdout["w4a16-gptq-asym-act-order"])
        self.assertIn("(group 32, symmetric, act-order, dynamic groups)", self.stdout["w4a16-gptq-act-order-dynamic"])
        self.assertIn("scheme:     w8a8-smoothquant (per-channel, alpha 0.6)", self.stdout["w8a8-smoothquant"])
        self.assertIn("smoothing:  4 norms folded", self.stdout["w8a8-smoothquant"])
        self.assertIn("attn_norm max|x|", self.stderr["w8a8-smoothquant"])

    def test_gptq_output_error_is_below_round_to_nearest(self):
        for name in ("w4a16-gptq", "w4a16-gptq-asym-act-order", "w4a16-gptq-act-order-dynamic"):
            with self.subTest(name):
                line = next(l for l in self.stdout[name].splitlines() if l.startswith("output:"))
                gptq = float(line.split("mean over tensors ")[1].split()[0])
                rtn = float(line.split("round-to-nearest: ")[1].rstrip(")"))
                self.assertLess(gptq, rtn, line)

    def test_files_run_and_honour_their_scales(self):
        for name, path in self.files.items():
            with self.subTest(name):
                code, out, err = run("run", "--model", path, "--prompt-tokens", "1,2,3", "-n", "8", "--temp", "0",
                                     "--print-token-ids")
                self.assertEqual(code, 0, err)
                self.assertEqual(len(out.strip().splitlines()[-1].split(",")), 8, out)
                dequantized = tmp_path(name + "-dequantized.gguf")
                code, _, err = run("convert", "--model", path, "--type", "f32", "--out", dequantized)
                self.assertEqual(code, 0, err)
                reference = {"ANVIL_GEMM": "reference"}
                self.assertLess(relative_error(logits(path, PROMPT, reference), logits(dequantized, PROMPT, reference)),
                                1e-5)
                # The default paths (fused GEMV of q/k/v and gate/up; oneDNN for the longer prompt)
                # with bf16 activations, as test_quantize's W4A16 check above.
                if name.startswith("w4a16"):
                    self.assertLess(relative_error(logits(path, PROMPT), logits(dequantized, PROMPT)), 2e-2)
                    self.assertLess(relative_error(logits(path, LONG_PROMPT), logits(dequantized, LONG_PROMPT)), 0.05)

    def test_gptq_metadata_and_layout(self):
        for name, symmetric, act_order, dynamic in (("w4a16-gptq", True, None, None),
                                                    ("w4a16-gptq-asym-act-order", False, True, None),
                                                    ("w4a16-gptq-act-order-dynamic", True, True, True)):
            with self.subTest(name):
                q = gguf_tensors.read(self.files[name])
                self.assertEqual(q.value("anvil.quantization.scheme"), "w4a16-gptq")
                self.assertEqual(q.value("anvil.quantization.group_size"), 32)
                self.assertEqual(q.value("anvil.quantization.symmetric"), symmetric)
                self.assertEqual(q.value("anvil.quantization.act_order"), act_order)
                self.assertEqual(q.value("anvil.quantization.dynamic_groups"), dynamic)
                for tname, tensor in q.tensors.items():
                    if tname.endswith("_scale") or tname.endswith("_zero") or tname.endswith("_order"):
                        continue
                    if any(f".{layer}.weight" in tname for layer in LINEAR):
                        self.assertEqual(tensor.type_name, "I4", tname)
                        self.assertEqual(q.tensors[tname + "_scale"].shape, (tensor.shape[0], tensor.shape[1] // 32))
                        self.assertEqual(tname + "_zero" in q.tensors, not symmetric)
                        # Dynamic groups: the codes in processing order, and the input column of each.
                        self.assertEqual(tname + "_order" in q.tensors, bool(dynamic))
                        if dynamic:
                            order = q.tensors[tname + "_order"].floats()
                            self.assertEqual(sorted(int(v) for v in order), list(range(tensor.shape[1])), tname)
                            self.assertNotEqual(list(order), sorted(order), tname)
                    else:  # GPTQ changes nothing else
                        self.assertEqual(tensor.raw, Fixture.f32.tensors[tname].raw, tname)
                if dynamic:
                    # NumPy's reading of codes, scales and orders is the weight anvil converts to F32.
                    f32_path = tmp_path(name + "-layout-f32.gguf")
                    code, _, err = run("convert", "--model", self.files[name], "--type", "f32", "--out", f32_path)
                    self.assertEqual(code, 0, err)
                    f32 = gguf_tensors.read(f32_path)
                    for tname in q.tensors:
                        if tname + "_order" in q.tensors:
                            w, _ = gguf_tensors.dequantize(q, tname)
                            np.testing.assert_allclose(f32.tensors[tname].floats(), w, rtol=1e-6, atol=1e-7,
                                                       err_msg=tname)

    def test_smoothquant_folds_into_the_norms(self):
        # NumPy, from the file alone: s = old norm / new norm; each smoothed weight divided by s is the
        # source within half an int8 step (scaled by 1/s); attn_output and ffn_down are unsmoothed.
        q = gguf_tensors.read(self.files["w8a8-smoothquant"])
        self.assertEqual(q.value("anvil.quantization.scheme"), "w8a8-smoothquant")
        self.assertAlmostEqual(q.value("anvil.quantization.smoothquant_alpha"), 0.6, places=6)
        src = Fixture.f32.tensors
        for layer in range(2):
            for norm, weights in (("attn_norm", ("attn_q", "attn_k", "attn_v")), ("ffn_norm", ("ffn_gate", "ffn_up"))):
                old = src[f"blk.{layer}.{norm}.weight"].floats().astype(np.float64)
                new = q.tensors[f"blk.{layer}.{norm}.weight"].floats().astype(np.float64)
                s = old / new
                self.assertTrue(np.all(s > 0) and s.max() > 1.0, f"{norm} {s}")
                for w in weights:
                    tname = f"blk.{layer}.{w}.weight"
                    deq, scale = gguf_tensors.dequantize(q, tname)
                    ref = src[tname].floats().astype(np.float64)
                    bound = (scale / 2 * (1 + 1e-5)) / s[None, :] + 1e-6 * np.abs(ref)
                    self.assertTrue(np.all(np.abs(deq / s[None, :] - ref) <= bound), tname)
            for w in ("attn_output", "ffn_down"):
                tname = f"blk.{layer}.{w}.weight"
                deq, scale = gguf_tensors.dequantize(q, tname)
                ref = src[tname].floats().astype(np.float64)
                self.assertTrue(np.all(np.abs(deq - ref) <= scale / 2 * (1 + 1e-6) + 1e-7 * np.abs(ref)), tname)
        self.assertEqual(q.tensors["output_norm.weight"].raw, src["output_norm.weight"].raw)
        self.assertLess(relative_error(logits(self.files["w8a8-smoothquant"], PROMPT), logits(MODEL, PROMPT)), 0.08)


class CalibratedStories(unittest.TestCase):
    """stories260K (no tokenizer: calibration by token ids). Its ffn_down rows (172) fit no int4 group,
    so w4a16 keeps them with --ignore ffn_down. GPTQ must beat round-to-nearest in KL divergence
    from the f32 model on held-out text the model wrote itself."""

    @classmethod
    def setUpClass(cls):
        cls.model = os.path.join(ARGS.shared_data, "models", "stories260K.bin")
        cls.calib, cls.evaluation = tmp_path("stories-calib.txt"), tmp_path("stories-eval.txt")
        for path, seeds in ((cls.calib, range(1, 17)), (cls.evaluation, range(101, 109))):
            with open(path, "w") as f:
                for seed in seeds:
                    code, out, err = run("run", "--model", cls.model, "--prompt-tokens", "1", "-n", "127", "--temp", "1",
                                         "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", str(seed),
                                         "--ignore-eos", "--print-token-ids")
                    assert code == 0, err
                    f.write("1," + out.strip().splitlines()[-1] + "\n")

    def kld(self, path, base):
        code, out, err = run("perplexity", "--model", path, "--kl-divergence", "--kl-divergence-base", base, "--json")
        self.assertEqual(code, 0, err)
        return json.loads(out)["kld_mean"]

    def test_gptq_beats_rtn_and_smoothquant_runs(self):
        base = tmp_path("stories.kld")
        code, _, err = run("perplexity", "--model", self.model, "--tokens-file", self.evaluation, "--ctx", "128",
                           "--kl-divergence-base", base)
        self.assertEqual(code, 0, err)
        calib = ["--calib-tokens", self.calib, "--calib-samples", "16", "--calib-seq-len", "128"]
        files = {
            "rtn": ["--scheme", "w4a16-rtn", "--group", "32", "--ignore", "ffn_down"],
            "gptq": ["--scheme", "w4a16-gptq", "--group", "32", "--ignore", "ffn_down", *calib],
            "w8a8": ["--scheme", "w8a8"],
            "w8a8-smoothquant": ["--scheme", "w8a8-smoothquant", *calib],
        }
        kld = {}
        for name, args in files.items():
            path = tmp_path(f"stories-{name}.gguf")
            code, out, err = run("quantize", "--model", self.model, *args, "--out", path)
            self.assertEqual(code, 0, f"{name}: {err}")
            if name in ("rtn", "gptq"):
                q = gguf_tensors.read(path)
                self.assertEqual(q.tensors["blk.0.ffn_down.weight"].type_name, "F32")
                self.assertEqual(q.tensors["blk.0.ffn_up.weight"].type_name, "I4")
            code, out, err = run("run", "--model", path, "--prompt-tokens", "1", "-n", "8", "--temp", "0",
                                 "--print-token-ids")
            self.assertEqual(code, 0, err)
            kld[name] = self.kld(path, base)
        print(f"\nstories260K KL divergence from f32 (held-out, 8 x 128 tokens): {kld}", file=sys.stderr)
        self.assertLess(kld["gptq"], kld["rtn"])

    def test_text_calibration_needs_a_tokenizer(self):
        code, _, err = run("quantize", "--model", self.model, "--scheme", "w8a8", "--smoothquant", "--calib",
                           shakespeare(), "--out", tmp_path("never.gguf"))
        self.assertEqual(code, 1)
        self.assertIn("carries no tokenizer; give calibration token ids with --calib-tokens", err)
        code, _, err = run("quantize", "--model", self.model, "--scheme", "w4a16-gptq", "--group", "32",
                           "--calib-tokens", self.calib, "--out", tmp_path("never.gguf"))
        self.assertEqual(code, 1)
        self.assertIn("ffn_down.weight has rows of 172 elements", err)
        self.assertIn("--ignore", err)


class GgmlSchemes(unittest.TestCase):
    def test_q4_k_on_a_model_with_256_wide_rows(self):
        # tiny-llama's rows (64, 160) are not whole Q4_K super-blocks; small-llama's (512, 1536) are.
        path = tmp_path("small-q4_k.gguf")
        code, out, err = run("quantize", "--model", "dummy:small-llama", "--scheme", "q4_k", "--out", path)
        self.assertEqual(code, 0, err)
        q = gguf_tensors.read(path)
        self.assertEqual(q.tensors["blk.0.ffn_down.weight"].type_name, "Q4_K")
        # As llama-quantize makes them: the output layer Q6_K, the (untied) embedding the scheme's type.
        self.assertEqual(q.tensors["output.weight"].type_name, "Q6_K")
        self.assertEqual(q.tensors["token_embd.weight"].type_name, "Q4_K")
        self.assertIn("also:       output.weight F32 -> Q6_K", out)
        code, out, err = run("run", "--model", path, "--prompt-tokens", "1,2,3", "-n", "4", "--temp", "0",
                             "--print-token-ids")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out.strip().splitlines()[-1].split(",")), 4)


    def test_output_and_embedding_types(self):
        # tiny-llama3 ties its embeddings: token_embd.weight is the output layer. Its rows (64) are
        # not whole Q6_K blocks, so the default falls back to Q8_0 as llama-quantize does.
        path = tmp_path("tied-q4_0.gguf")
        code, out, err = run("quantize", "--model", "dummy:tiny-llama3", "--scheme", "q4_0", "--out", path)
        self.assertEqual(code, 0, err)
        self.assertEqual(gguf_tensors.read(path).tensors["token_embd.weight"].type_name, "Q8_0")
        code, out, err = run("quantize", "--model", "dummy:tiny-llama3", "--scheme", "q4_0", "--output-tensor-type",
                             "keep", "--out", path)
        self.assertEqual(code, 0, err)
        self.assertEqual(gguf_tensors.read(path).tensors["token_embd.weight"].type_name, "F32")
        # Tied, --token-embedding-type wins for the shared tensor, as in llama-quantize.
        code, out, err = run("quantize", "--model", "dummy:tiny-llama3", "--scheme", "q4_0", "--token-embedding-type",
                             "f16", "--out", path)
        self.assertEqual(code, 0, err)
        self.assertEqual(gguf_tensors.read(path).tensors["token_embd.weight"].type_name, "F16")
        # Quantized at load the same way (run -q).
        code, out, err = run("run", "--model", "dummy:tiny-llama3", "-q", "q4_0", "--prompt-tokens", "1,2,3", "-n",
                             "2", "--temp", "0", "--print-token-ids")
        self.assertEqual(code, 0, err)
        self.assertIn("token_embd.weight F32 -> Q8_0", err)
        code, out, err = run("quantize", "--model", "dummy:tiny-llama", "--scheme", "w8a8", "--output-tensor-type",
                             "q8_0", "--token-embedding-type", "f16", "--out", path)
        self.assertEqual(code, 0, err)
        q = gguf_tensors.read(path)
        self.assertEqual(q.tensors["output.weight"].type_name, "Q8_0")
        self.assertEqual(q.tensors["token_embd.weight"].type_name, "F16")
        code, out, err = run("run", "--model", path, "--prompt-tokens", "1,2,3", "-n", "4", "--temp", "0",
                             "--print-token-ids")
        self.assertEqual(code, 0, err)
        code, _, err = run("quantize", "--model", "dummy:tiny-llama3", "--scheme", "q4_0", "--output-tensor-type",
                           "q6_k", "--out", tmp_path("never.gguf"))
        self.assertEqual(code, 1)
        self.assertIn("--output-tensor-type Q6_K: tensor token_embd.weight has rows of 64 elements, not whole "
                      "256-element blocks", err)
        code, _, err = run("quantize", "--model", "dummy:tiny-llama", "--scheme", "q4_0", "--token-embedding-type",
                           "q5_k", "--out", tmp_path("never.gguf"))
        self.assertEqual(code, 1)
        self.assertIn("--token-embedding-type q5_k: use f32, f16, bf16, q8_0, q4_0, q4_k, q6_k or keep", err)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--anvil", required=True)
    parser.add_argument("--shared-data", required=True)
    parser.add_argument("--tmp", required=True)
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.tmp, exist_ok=True)
    result = unittest.main(argv=[sys.argv[0], "-v"] + rest, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
