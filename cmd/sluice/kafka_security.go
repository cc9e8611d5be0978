package main

import "time"

// kafkaCheckTimeout bounds the check at start that the brokers accept the
// configured credentials and TLS settings (see kafka.CheckKafka). Long
// enough for a broker that is still starting.
const kafkaCheckTimeout = 30 * time.Second
