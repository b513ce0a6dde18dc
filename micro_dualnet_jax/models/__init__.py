"""Micro-DualNet model modules (Flax NNX): the model and the pieces it is built from."""

from micro_dualnet_jax.config.model import DTYPES, FUSIONS, PATHS, ModelConfig
from micro_dualnet_jax.models.embedding import (EntityEmbedding, GlobalToken, PerEntityLinear,
                                                masked_mean, split_keypoints)
from micro_dualnet_jax.models.functional import apply, init
from micro_dualnet_jax.models.linen import MicroDualNetLinen
from micro_dualnet_jax.models.micro_dualnet import ClassifierHead, DualPathBranch, MicroDualNet
from micro_dualnet_jax.models.routing import EntityRouter, MeanFusion, StaticRouter, make_fusion
from micro_dualnet_jax.models.transformer import (MLP, Attention, Dropout, EncoderLayer,
                                                  TransformerStack)

__all__ = ['Attention', 'ClassifierHead', 'DTYPES', 'Dropout', 'DualPathBranch', 'EncoderLayer',
           'EntityEmbedding', 'EntityRouter', 'FUSIONS', 'GlobalToken', 'MLP', 'MeanFusion',
           'MicroDualNet', 'MicroDualNetLinen', 'ModelConfig', 'PATHS', 'PerEntityLinear', 'StaticRouter',
           'TransformerStack', 'apply', 'init', 'make_fusion', 'masked_mean', 'split_keypoints']
