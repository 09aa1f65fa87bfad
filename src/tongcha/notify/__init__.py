"""Messages to citizens: SMS gateways behind one interface, and the texts they carry."""
