"""Triton Inference Server: the backend (`backend`), its gRPC/HTTP client (`client`) and the model
repository writer (`repo`)."""
