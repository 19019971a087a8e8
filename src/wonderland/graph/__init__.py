"""Graphs as data (chapter 12): ``Graph``, ``Batch`` (many graphs as one block-diagonal
graph), ``GraphLoader``; utilities on ``edge_index`` (self-loops, symmetrisation,
degrees, normalised adjacency, k-hop neighbourhoods, Laplacian and random-walk
encodings); readers for the npz layouts and the small graphs shipped with the package;
helpers for node, link and graph tasks. The layers are in ``wl.nn`` (``GCNConv`` …)."""

from . import datasets, tasks, utils
from .data import Batch, Graph, GraphLoader, NodeIndex
from .datasets import (karate_club, load_citeseer, load_mutag, read_graph_npz, read_node_npz,
                       row_normalize)
from .tasks import (link_split, masked_accuracy, negative_sampling, roc_auc_score,
                    stratified_kfold)
from .utils import (add_remaining_self_loops, add_self_loops, adjacency_matrix, coalesce,
                    contains_self_loops, degree, from_dense_batch, gcn_norm, is_undirected,
                    k_hop_subgraph, laplacian, laplacian_eigenvectors, normalized_adjacency,
                    random_sign_flip, random_walk_encoding, remove_self_loops,
                    shortest_path_distances, subgraph, to_dense_adj, to_dense_batch,
                    to_undirected)

__all__ = [n for n in dir() if not n.startswith("_")]
