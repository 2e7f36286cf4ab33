"""Random-weight DistilBERT sentence models of the hub's shapes, saved by sentence-transformers, for the tests."""

from __future__ import annotations

from pathlib import Path

from embedrt.export.parity import CHECK_SENTENCES

DIM = 32
MAX_POSITIONS = 128
# Special tokens written as text: the tokenizer matches them as the special ids (a literal [PAD] is id 0, the pad
# id), and they keep attention 1.
SPECIAL_TEXTS = [
    "a [PAD] b",
    "[PAD]",
    "[PAD] [PAD] leading pads",
    "[CLS] starts [SEP] and ends [SEP]",
    "fill the [MASK] here",
    "[UNK] [MASK][PAD][SEP][CLS]",
]
LONG_TEXTS = [" ".join(CHECK_SENTENCES) * 6, "word " * 700, "[PAD] " * 200]


def save_distilbert(
    root: Path,
    tokenizer_dir: Path,
    *,
    seed: int,
    max_seq_length: int | None,
    dense_out: int | None = None,
    normalize: bool = False,
    sinusoidal: bool = False,
) -> Path:
    """A 2-layer DistilBertModel over ``tokenizer_dir``'s tokenizer -> mean Pooling [-> Dense(Tanh)] [-> Normalize].

    ``max_seq_length`` None leaves it out of sentence_bert_config.json (resolved from the tokenizer and the
    positions, as msmarco-distilbert's 512 is); ``dense_out`` adds distiluse's Dense head.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=DIM,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=MAX_POSITIONS,
        sinusoidal_pos_embds=sinusoidal,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = DistilBertModel(config)
    if not sinusoidal:  # a learned table; the random init's std 0.02 would leave positions nearly irrelevant
        with torch.no_grad():
            model.embeddings.position_embeddings.weight.normal_(0, 0.5)
    hf = root / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    kwargs = {"max_seq_length": max_seq_length} if max_seq_length is not None else {}
    modules = [Transformer(str(hf), **kwargs), Pooling(DIM, "mean")]
    if dense_out is not None:
        modules.append(Dense(DIM, dense_out, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    source = root / "st"
    SentenceTransformer(modules=modules, device="cpu").save(str(source))
    return source


def save_uncased_tokenizer(minilm_dir: Path, out_dir: Path, model_max_length: int) -> Path:
    """distilbert-base-uncased's tokenizer (bert-base-uncased's vocabulary, MiniLM's too) as DistilBertTokenizerFast."""
    from transformers import DistilBertTokenizerFast

    DistilBertTokenizerFast(
        vocab_file=str(minilm_dir / "vocab.txt"), model_max_length=model_max_length
    ).save_pretrained(str(out_dir))
    return out_dir
