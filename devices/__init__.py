"""Device models. They see guest memory and interrupt lines only, never the CPU engine."""
