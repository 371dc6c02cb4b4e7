"""Generated from protos/speechkit/tts/v3 by scripts/gen_protos.py. Do not edit."""
