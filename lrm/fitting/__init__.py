"""Fitting a triplane field directly to a mesh (`lrm fit`)."""
