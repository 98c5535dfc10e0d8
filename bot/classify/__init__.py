"""Classifiers: the interface and the built-in hash-list classifier."""

from bot.classify.base import Classifier, MediaInput
from bot.classify.hashlist import HashListClassifier
from bot.lists.loaded import ListLoadReport, LoadedList, Thresholds, build_lists

__all__ = [
    "Classifier",
    "HashListClassifier",
    "ListLoadReport",
    "LoadedList",
    "MediaInput",
    "Thresholds",
    "build_lists",
]
