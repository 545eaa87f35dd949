"""What every parity tool shares: comparison, the judgement rule, the float64 reference,
seeded data, threads, the environment record, text and progress output."""
