#!/usr/bin/env python3
"""Writes the tokenizer golden files from Hugging Face `tokenizers`.

Run with the reference venv (tests/ref/venv.sh prints its python):
    $(tests/ref/venv.sh) tests/ref/tokenizer_ref.py [--root DIR]

Outputs (tests/golden/, small on purpose):
  tokenizer_data.txt     one line per dataset text (gsm8k train+test
                         question/answer, math500 problem/solution/answer, in
                         file order): "<n_ids> <hash>" where hash is
                         id_hash() below of the ids of the REAL Qwen tokenizer
  tokenizer_hard.jsonl   hard strings: text, full ids, decoded text
  tokenizer_decode.jsonl ids -> text (partial UTF-8, special tokens, unknown ids)
  tiny_tokenizer.json    a small byte-level BPE trained here, with added tokens
                         that use lstrip/rstrip/single_word/normalized flags
  tiny_hard.jsonl        the hard strings through tiny_tokenizer.json
  prompt_ref.json        the prompts rendered by transformers' chat template
"""
import argparse
import json
import os
import struct
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLD = os.path.join(ROOT, "tests", "golden")
M64 = (1 << 64) - 1


def id_hash(ids):
    """FNV-1a 64 over the ids as little-endian int32, then the murmur3
    finaliser; the top 48 bits as 12 hex digits (tests/unit/test_tokenizer.c
    computes the same)."""
    h = 0xCBF29CE484222325
    for b in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ b) * 0x100000001B3) & M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    h ^= h >> 33
    return "%012x" % (h >> 16)


def dataset_texts(root):
    """The texts in the order the C test reads them."""
    spec = [("gsm8k/train.jsonl", ["question", "answer"]),
            ("gsm8k/test.jsonl", ["question", "answer"]),
            ("math500/test.jsonl", ["problem", "solution", "answer"])]
    for rel, fields in spec:
        with open(os.path.join(root, "data", rel), encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                for k in fields:
                    yield str(rec[k])


PROMPTS = {
    "lightreasoner": "<|im_start|>system\nPlease reason step by step.<|im_end|>\n"
                     "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
    "qwen25-math-cot": "<|im_start|>system\nPlease reason step by step, and put your final answer within "
                       "\\boxed{{}}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
}
PROMPT_QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                   "clips in May. How many clips did Natalia sell altogether in April and May?")


def hard_strings():
    s = [
        "", "Hello, world!", "hello world", " leading space", "trailing space ", "a", " ", "'",
        # CJK and other scripts
        "你好，世界！今天是2024年。", "こんにちは世界、カタカナ", "안녕하세요 세계", "مرحبا بالعالم",
        "שלום עולם", "สวัสดีครับ", "नमस्ते दुनिया", "Здравствуй, мир", "Γειά σου Κόσμε",
        # emoji, ZWJ sequences, skin tones, flags, variation selectors
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪🇯🇵", "❤️", "I ❤️ 🍕!", "😀" * 50,
        # combining marks and non-NFC input
        "cafe\u0301", "café", "e\u0301\u0301", "\u212B", "\u1E9B\u0323", "\u1100\u1161\u11A8",
        "A\u030A", "\u0041\u0308\u0304", "n\u0303o", "\u0958", "Zalgo: Z\u0351\u0360\u0489a\u0337l\u0336g\u0334o",
        # digits
        "12345678901234567890", "3.14159265358979323846264338327950288419716939937510",
        "1,000,000", "$1,234.56", "-0.5e-10", "2^{10}=1024", "1" * 1000,
        # whitespace runs, newlines, tabs, CRLF
        "a    b", "     ", "\n\n\n", "a \n\n  b", " \t \n", "x\r\ny\r\n\r\nz", "\t\tindented",
        "end   ", "a\n", "\n", "  \n  \n", "line1\nline2\n\nline3", "\r", "\r\r\n\n", "a\t\tb\t",
        " " * 1000, "\n" * 500, "a " * 300, " \n" * 200,
        # unusual whitespace and invisible characters
        "\u00a0", "a\u00a0b", "a\u2003b", "\u3000x", "a\u2028b", "a\u2029b", "a\u0085b", "a\u200bb",
        "a\u180eb", "\ufeffBOM", "a\u000b\u000cb", "a\u1680b", "a\u202fb", "a\u205fb", "x\u2009 y",
        "\u200d", "\u2060word", ".  \u180e\u1cf7", "x \u180e y", "\u180e\u180e  \u180e", "a\u0085\u180e  b",
        # LaTeX
        "$\\frac{1}{2} + \\sqrt{x^2+y^2} = \\boxed{42}$",
        "\\begin{align*}\na &= b \\\\\nc &= d\n\\end{align*}",
        "The answer is $\\boxed{\\dfrac{3}{4}}$.", "\\left( \\frac{a}{b} \\right)^{n-1}",
        "[asy]\nunitsize(0.8 cm);\ndraw((0,0)--(3,0));\n[/asy]",
        # special and added tokens inside text
        "a<|im_end|>b", "<|im_start|>user\nhi<|im_end|>\n", "<|im_end|><|im_end|>", "<|im_end",
        "<|endoftext|>", "x<think>y</think>z", "<|fim_prefix|>code<|fim_suffix|>", " <|im_end|> ",
        "<|im_start|><|im_start|>", "<<|im_end|>>", "<|im_end|>|>", "<tool_call>\n{}\n</tool_call>",
        "<|im_sta", "<|IM_END|>",
        # contractions and case folding
        "it's", "IT'S", "don't", "they're", "we've", "I'm", "you'll", "he'd", "'S'T", "'s", "''s",
        "'\u017f", "'\u212a", "O'Neil's", "rock 'n' roll", "'ll've",
        # unicode numbers
        "½ ⅓ ² ³ ٣ ४ 〇 Ⅻ ①", "٠١٢٣٤٥٦٧٨٩", "𝟙𝟚𝟛", "x²+y³",
        # astral letters, private use, noncharacters, controls
        "𝑥𝑦𝑧 𝔸𝔹", "\ue000\U000F0000", "\U0010FFFF", "\uFFFF", "\U000E0001tag", "\u0000a", "\u0001\u007f\u0080",
        "\ufffd", "a\ufffdb",
        # punctuation runs and code
        "!!!???...", "---===+++", "a->b=>c", "def f(x):\n    return x**2\n", "{\"a\": [1, 2]}",
        "http://example.com/path?q=1&r=2", "email@example.com", "C++ & C#", "...\n\n...",
        "。、！？「」", "“quoted” ‘single’ — dash – en", "×÷±∞≤≥≠≈∑∏∫√∂∇",
        # long letter runs
        "a" * 3000, "ab" * 500, "x" + "y" * 200 + "z",
    ]
    s += random_strings(200)
    for name, tmpl in PROMPTS.items():
        s.append(tmpl.replace("{{}}", "{}").replace("{question}", PROMPT_QUESTION))
    return s


def random_strings(n, seed=1234):
    """Seeded random mixes of the pieces that matter to the pre-tokenizer
    (whitespace kinds, marks, contractions, added tokens) and random
    characters from old, stable Unicode blocks."""
    import random
    rng = random.Random(seed)
    pool = [" ", "\n", "\r", "\t", "  ", "\r\n", "'", "'s", "'S", "'ll", "'\u017f", "a", "Z", "e\u0301", "\u0301", "1",
            "\u0663", "\u00bd", "\u00b2", "\u4f60", "\U0001F600", "\u200d", "\U0001F3FD", "\u00a0", "\u2028", "\u0085",
            "\u3000", "\u200b", "\u180e", "\ufeff", "<|im_end|>", "<|im_start|>", "<think>", "<|", "|>", "<", "$",
            "\\frac", "{", "}", ".", ",", "!", "-", "_", "\u0000", "\u007f", "\ufffd", "\u0915", "\u093f", "\u00df",
            "\u212a", "\u212b", "\u1100", "\u1161", "\u11a8", "\ufb01", "\u216b", "\U0001D7D9", " the", "x"]
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(pool) if rng.random() < 0.7 else
                           chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x7ff), rng.randint(0x4e00, 0x9fff)]))
                           for _ in range(k)))
    return out


def decode_cases(t):
    """(ids, skip_special) pairs for the decode golden."""
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = {}
    # GPT-2's byte <-> unicode map, to get each single byte's token id
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    for b, c in zip(bs, cs):
        alphabet[b] = t.token_to_id(chr(c))
    assert set(alphabet.values()) != {None} and len(ByteLevel.alphabet()) == 256

    def B(*bytes_):
        return [alphabet[b] for b in bytes_]

    a = alphabet[ord("a")]
    cases = [
        B(0xF0), B(0xF0, 0x9F), B(0xF0, 0x9F, 0x98), B(0xF0, 0x9F, 0x98, 0x80), B(0x9F), B(0x80, 0x80),
        B(0xF0) + [a], B(0xE0, 0x80), B(0xED, 0xA0, 0x80), B(0xF4, 0x90), B(0xC0, 0x80), B(0xFF),
        B(0xE2, 0x82) + [a], B(0xF0, 0x9F, 0x98) + B(0xF0, 0x9F, 0x98, 0x80), B(0xC3), B(0xC3) + B(0xA9),
        B(0xE4, 0xBD) + B(0xA0), B(0xF5, 0x80, 0x80), B(0xF8, 0x88, 0x80, 0x80, 0x80), B(0xE1, 0x80, 0x41),
        B(0xF1, 0x80, 0x80) + [a], B(0xEF, 0xBF, 0xBD), B(0xC2), [a] + B(0xDF),
        [], [a, 999999999], [999999999], [a, 151645, a], [151643, 151644, 151645], [a, 151667, a],
    ]
    out = []
    for ids in cases:
        out.append((ids, False))
    for ids in ([a, 151645, a], [151643, 151644, 151645], [a, 151667, a], [151644] + t.encode("hi").ids):
        out.append((ids, True))
    # every prefix of a few multi-byte encodings (cuts inside characters)
    for text in ["é😀你好👨‍👩‍👧", "😀" * 6, "नमस्ते", "a\u0301\U0010FFFF"]:
        ids = t.encode(text).ids
        for k in range(1, len(ids) + 1):
            out.append((ids[:k], False))
            if k > 1:
                out.append((ids[1:k], False))
    return out


def build_tiny(root):
    """A small ByteLevel BPE like a test model's, plus added tokens whose
    flags exercise the matching rules of AddedVocabulary."""
    qwen = json.load(open(os.path.join(root, "build", "tokenizers", "qwen", "tokenizer.json"), encoding="utf-8"))
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(qwen["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]),
                             behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    texts = [t for _, t in zip(range(800), dataset_texts(root))]
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, normalized=True, special=False),
                    AddedToken("cafe\u0301", normalized=True, special=False),
                    AddedToken("word", single_word=True, normalized=False, special=False),
                    AddedToken("<raw>", normalized=False, special=False),
                    AddedToken("<raw>long", normalized=False, special=False),
                    AddedToken("hé llo", normalized=False, special=False),
                    AddedToken("Ñx", normalized=False, special=False)])
    tok.add_special_tokens([AddedToken("<sep>", lstrip=True, special=True, normalized=False)])
    return tok


def tiny_strings():
    return ["a <mask> b", "a<mask>b", "  <mask>  x", "café", "cafe\u0301", "cafe\u0301s", "word",
            "a word here", "swordfish", "word_x", "word!", "_word", "<raw>", "<raw>longer", "<raw>lon",
            "hé llo", "Ñx", "x <sep> y", "  <sep>", "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
            "<mask><mask>", " <mask> <sep> word <raw>",
            # single_word uses Rust regex \w: marks and Nd count as word characters, No does not
            "cafe\u0301word", "e\u0301word", "\u0301word", "word\u0301", "\u00b2word", "word\u00b2", "1word",
            "\u24b6word", "word\u200d", "\ue000word", "\u3000word\u3000", "\u180eword"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=ROOT, help="repository (data/, build/tokenizers/qwen)")
    args = ap.parse_args()
    os.makedirs(GOLD, exist_ok=True)
    t = Tokenizer.from_file(os.path.join(args.root, "build", "tokenizers", "qwen", "tokenizer.json"))

    texts = list(dataset_texts(args.root))
    encs = t.encode_batch_fast(texts) if hasattr(t, "encode_batch_fast") else t.encode_batch(texts)
    with open(os.path.join(GOLD, "tokenizer_data.txt"), "w") as f:
        f.write("# %d texts: gsm8k/train, gsm8k/test (question, answer), math500/test (problem, solution, "
                "answer); <n_ids> <id_hash>\n" % len(texts))
        for e in encs:
            f.write("%d %s\n" % (len(e.ids), id_hash(e.ids)))

    def write_hard(tk, strings, path):
        with open(path, "w", encoding="utf-8") as f:
            for s in strings:
                ids = tk.encode(s).ids
                f.write(json.dumps({"text": s, "ids": ids, "decoded": tk.decode(ids, skip_special_tokens=False)},
                                   ensure_ascii=False) + "\n")

    hard = hard_strings()
    write_hard(t, hard, os.path.join(GOLD, "tokenizer_hard.jsonl"))
    with open(os.path.join(GOLD, "tokenizer_decode.jsonl"), "w", encoding="utf-8") as f:
        for ids, skip in decode_cases(t):
            f.write(json.dumps({"ids": ids, "skip_special": skip, "text": t.decode(ids, skip_special_tokens=skip)},
                               ensure_ascii=False) + "\n")

    tiny = build_tiny(args.root)
    tiny.save(os.path.join(GOLD, "tiny_tokenizer.json"), pretty=False)
    tiny = Tokenizer.from_file(os.path.join(GOLD, "tiny_tokenizer.json"))
    write_hard(tiny, tiny_strings() + hard, os.path.join(GOLD, "tiny_hard.jsonl"))

    # The presets against transformers' own chat template (lightreasoner =
    # system + user + generation prompt), and the METHOD.md strings.
    from transformers import AutoTokenizer
    at = AutoTokenizer.from_pretrained(os.path.join(args.root, "build", "tokenizers", "qwen"))
    chat = at.apply_chat_template([{"role": "system", "content": "Please reason step by step."},
                                   {"role": "user", "content": PROMPT_QUESTION}],
                                  tokenize=False, add_generation_prompt=True)
    mine = PROMPTS["lightreasoner"].replace("{question}", PROMPT_QUESTION)
    assert chat == mine, (chat, mine)
    cot_chat = at.apply_chat_template([{"role": "system", "content": "Please reason step by step, and put your "
                                        "final answer within \\boxed{}."},
                                       {"role": "user", "content": PROMPT_QUESTION}],
                                      tokenize=False, add_generation_prompt=True)
    with open(os.path.join(GOLD, "prompt_ref.json"), "w", encoding="utf-8") as f:
        json.dump({"question": PROMPT_QUESTION, "lightreasoner": chat, "qwen25-math-cot": cot_chat,
                   "lightreasoner_ids": t.encode(chat).ids, "qwen25-math-cot_ids": t.encode(cot_chat).ids},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%d dataset texts, %d hard strings, %d decode cases, %d tiny strings" %
          (len(texts), len(hard), len(decode_cases(t)), len(tiny_strings()) + len(hard)), file=sys.stderr)


if __name__ == "__main__":
    main()
