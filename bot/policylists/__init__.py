"""Matrix policy lists (MSC2313, MSC4205, MSC4207): following other people's, publishing our own."""
