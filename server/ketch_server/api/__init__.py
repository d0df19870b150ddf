"""gRPC edge: servicers, converters and the error interceptor."""
