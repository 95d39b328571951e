"""One campaign run: read rows, onboard, hold out, route, stage the desired membership, hand each channel its part."""
