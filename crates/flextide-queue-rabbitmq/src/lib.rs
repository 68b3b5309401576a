//! RabbitMQ backend for Flextide Queue (lapin): quorum queues, publisher confirms, plugin-free delays, dead-letter exchanges.
