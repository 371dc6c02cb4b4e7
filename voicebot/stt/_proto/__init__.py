"""Generated from protos/speechkit/stt/v3 by scripts/gen_protos.py. Do not edit."""
