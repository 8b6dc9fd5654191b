"""Tests of minirso.checkpoint, one file per module of the package."""
