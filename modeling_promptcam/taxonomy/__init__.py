"""Taxonomy keys: a hierarchical Prompt-CAM whose models say which traits separate each group from its siblings
(the paper's Fig. 9 as a workflow). The table ([`read_taxonomy`]), the model ([`PromptCamTaxonomy`]), its training
([`run_taxonomy_training`]), accuracy per level ([`evaluate_taxonomy`]) and keys ([`explain_taxonomy`],
[`class_key`]); docs/taxonomy.md.
"""

from .evaluation import evaluate_taxonomy
from .model import (
    MODES,
    TAXONOMY_FILE,
    PromptCamTaxonomy,
    TaxonomyFolderError,
    TaxonomyPrediction,
    TaxonomyUnit,
    plan_units,
)
from .options import TaxonomyKeyOptions
from .table import ROOT, Taxonomy, TaxonomyError, parse_levels, read_taxonomy, taxonomy_from_columns
from .training import run_taxonomy_training

__all__ = [
    "MODES",
    "ROOT",
    "TAXONOMY_FILE",
    "PromptCamTaxonomy",
    "Taxonomy",
    "TaxonomyError",
    "TaxonomyFolderError",
    "TaxonomyKeyOptions",
    "TaxonomyPrediction",
    "TaxonomyUnit",
    "evaluate_taxonomy",
    "parse_levels",
    "plan_units",
    "read_taxonomy",
    "run_taxonomy_training",
    "taxonomy_from_columns",
]
