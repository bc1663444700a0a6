"""Generated from protos/ by ops/codegen.py. Do not edit."""
