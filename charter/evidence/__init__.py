"""What an auditor depends on: Charter's evidence formats and their offline verification."""
