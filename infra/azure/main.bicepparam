// Parameters for main.bicep. Values that differ per deployment come from the environment
// so nothing secret is written to a file (docs/operations.md, "From zero to replicas on Azure"):
//   COORDINATOR_IMAGE   e.g. myfleetacr.azurecr.io/fleet-coordinator:1
//   ACR_NAME            the registry holding it (empty for a public image)
//   FLEET_ADMIN_TOKEN   the admin token every replica shares (at least 32 characters)
using './main.bicep'

param namePrefix = 'fleet'
param cosmosCapacityMode = 'Serverless'
param cosmosAutoscaleMaxThroughput = 4000
param cosmosConsistencyLevel = 'Strong'
param cosmosDatabaseName = 'fleet'
param containerImage = readEnvironmentVariable('COORDINATOR_IMAGE')
param registryName = readEnvironmentVariable('ACR_NAME', '')
param adminToken = readEnvironmentVariable('FLEET_ADMIN_TOKEN')
param minReplicas = 2
param maxReplicas = 6
param externalIngress = true
param defaultLeaseSeconds = 60
param reaperIntervalSeconds = 5
param jobShards = 16
