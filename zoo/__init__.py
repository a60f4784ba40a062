"""Model zoo: token-level language models (Transformer, Mamba, Hyena, n-gram) for the subchar adapter.

Each neural model lives in its own module (``zoo.transformer``, ``zoo.mamba``, ``zoo.hyena``) with a
``Config`` dataclass and a ``Model`` offering teacher-forced ``forward`` and incremental ``step``;
``zoo.registry`` names them and ``zoo.streaming.TorchTokenLM`` drives them as a ``subchar.lm.TokenLM``. The model
files import only torch, numpy and each other; ``zoo.train`` also trains a module of your own that follows
``zoo.interface.StreamingNetwork``.
"""
