"""inference_service package."""
