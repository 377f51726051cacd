"""The fault suite: the real stack driven the way production fails it (``make faults``)."""
