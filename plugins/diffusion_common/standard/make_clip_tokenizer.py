"""Rebuild ``clip_vocab.json`` and ``clip_merges.txt`` (the CLIP BPE tokenizer that Stable Diffusion
1.x/2.x and SDXL use) from the BPE merge list that the ``open_clip_torch`` package ships
(``open_clip/bpe_simple_vocab_16e6.txt.gz``, MIT licence; see ``README.md`` beside this file).

    pip download --no-deps -d /tmp/oc open_clip_torch
    python -m plugins.diffusion_common.standard.make_clip_tokenizer /tmp/oc/open_clip_torch-*.whl

The vocabulary is built the way CLIP builds it: the 256 byte symbols, the same with the
end-of-word mark ``</w>``, one token per merge (the first 48,894 merges), then the two special
tokens: 49,408 tokens in all.
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary size 49,408 = 2 * 256 bytes + merges + 2 specials


def byte_symbols() -> list[str]:
    """The printable character standing for each byte 0..255 (GPT-2/CLIP byte-level BPE): bytes
    that are printable Latin-1 characters stand for themselves, the others for 256 + n."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    order, chars, extra = [], [], 0
    for b in range(256):
        order.append(b)
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    # CLIP lists the kept bytes first, then the remapped ones
    kept = [(b, c) for b, c in zip(order, chars) if b in keep]
    moved = [(b, c) for b, c in zip(order, chars) if b not in keep]
    return [c for _, c in kept + moved]


def build(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1:1 + N_MERGES]
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError("the BPE file does not hold the expected CLIP merge list")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="the open_clip_torch wheel (or the .txt.gz itself)")
    parser.add_argument("--out", default=str(HERE), help="folder to write into (default: beside this script)")
    args = parser.parse_args(argv)
    src = Path(args.wheel)
    data = zipfile.ZipFile(src).read(BPE_MEMBER) if src.suffix == ".whl" else src.read_bytes()
    vocab, merges = build(data)
    out = Path(args.out)
    (out / "clip_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (out / "clip_merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
