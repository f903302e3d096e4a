// Fleet Coordinator on Azure: Cosmos DB for NoSQL (serverless or autoscale) and the
// coordinator on Azure Container Apps with at least two replicas.
//
//   az deployment group create -g <group> -f infra/azure/main.bicep \
//     -p infra/azure/main.bicepparam -p containerImage=<registry>/fleet-coordinator:<tag> ...
//
// The containers (name, partition key, indexing policy) come from containers.json,
// which is generated from the coordinator's code (make generate); do not edit them here.
// docs/operations.md walks through a deployment; docs/cosmos.md explains the choices.

targetScope = 'resourceGroup'

@description('Prefix of every resource name: lowercase letters and digits.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'fleet'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Serverless (pay per request, for small or bursty fleets) or Autoscale (provisioned RU/s that scale between 10 % and 100 % of the maximum).')
@allowed([
  'Serverless'
  'Autoscale'
])
param cosmosCapacityMode string = 'Serverless'

@description('Autoscale only: the database throughput ceiling in RU/s, shared by its containers (at least 1000, in steps of 1000).')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 4000

@description('Default consistency of the account. Strong makes a read on one replica see every write acknowledged on another (see docs/cosmos.md); claims are single-winner at any level.')
@allowed([
  'Strong'
  'BoundedStaleness'
  'Session'
])
param cosmosConsistencyLevel string = 'Strong'

@description('The Cosmos DB database name (FLEET_COSMOS_DATABASE).')
param cosmosDatabaseName string = 'fleet'

@description('The coordinator image, e.g. myregistry.azurecr.io/fleet-coordinator:1 (built from infra/docker/Dockerfile, target coordinator).')
param containerImage string

@description('Name of the Azure Container Registry holding the image, in this resource group; empty for a public image. The app pulls with a user-assigned identity granted AcrPull.')
param registryName string = ''

@description('The admin bearer token (FLEET_ADMIN_TOKEN), shared by every replica. At least 32 characters.')
@secure()
@minLength(32)
param adminToken string

@description('Replicas that always run: at least two, so one can restart while the other serves.')
@minValue(2)
param minReplicas int = 2

@description('Replicas the CPU rule may scale out to.')
@minValue(2)
param maxReplicas int = 6

@description('Expose the API on the internet (true) or only inside the environment (false).')
param externalIngress bool = true

@description('FLEET_DEFAULT_LEASE_SECONDS: lease length of jobs that do not set lease_seconds.')
param defaultLeaseSeconds int = 60

@description('FLEET_REAPER_INTERVAL_SECONDS: how often every replica sweeps for expired leases.')
param reaperIntervalSeconds int = 5

@description('FLEET_JOB_SHARDS: logical partitions the jobs spread over. Fixed for the life of the database.')
@minValue(1)
@maxValue(256)
param jobShards int = 16

@description('vCPU of one replica (0.25 steps).')
param cpu string = '0.5'

@description('Memory of one replica; Container Apps requires 2 GiB per vCPU (0.5 vCPU: 1Gi).')
param memory string = '1Gi'

// The port the image serves on (infra/docker/Dockerfile: fleet-coordinator serve --port 8787).
var targetPort = 8787
var isServerless = cosmosCapacityMode == 'Serverless'
var suffix = uniqueString(resourceGroup().id, namePrefix)
var containerDefinitions = loadJsonContent('containers.json').containers
var usesRegistry = !empty(registryName)
var acrPullRoleId = subscriptionResourceId(
  'Microsoft.Authorization/roleDefinitions',
  '7f951dda-4ed3-4680-a7ca-43fe172d538d'
)

// ---- Cosmos DB for NoSQL -------------------------------------------------------------

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: '${namePrefix}-cosmos-${suffix}'
  location: location
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: cosmosConsistencyLevel
      maxStalenessPrefix: 100000
      maxIntervalInSeconds: 300
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: isServerless ? [ { name: 'EnableServerless' } ] : []
    // The coordinator authenticates with the account key (FLEET_COSMOS_KEY).
    disableLocalAuth: false
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: cosmos
  name: cosmosDatabaseName
  properties: {
    resource: {
      id: cosmosDatabaseName
    }
    // Serverless accounts take no throughput setting; autoscale is shared by the containers.
    options: isServerless ? {} : {
      autoscaleSettings: {
        maxThroughput: cosmosAutoscaleMaxThroughput
      }
    }
  }
}

resource containers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for c in containerDefinitions: {
    parent: database
    name: c.name
    properties: {
      resource: {
        id: c.name
        partitionKey: c.partitionKey
        indexingPolicy: c.indexingPolicy
        // jobs: -1 (time to live on; terminal jobs carry their retention as ttl).
        defaultTtl: c.?defaultTtl
      }
      options: {}
    }
  }
]

// ---- Container Apps ------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs-${suffix}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-env-${suffix}'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (usesRegistry) {
  name: usesRegistry ? registryName : 'unused'
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (usesRegistry) {
  name: '${namePrefix}-pull-${suffix}'
  location: location
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (usesRegistry) {
  name: guid(resourceGroup().id, registryName, 'acrpull', namePrefix)
  scope: registry
  properties: {
    roleDefinitionId: acrPullRoleId
    principalId: usesRegistry ? pullIdentity.properties.principalId : ''
    principalType: 'ServicePrincipal'
  }
}

resource coordinator 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${namePrefix}-coordinator'
  location: location
  identity: usesRegistry
    ? {
        type: 'UserAssigned'
        userAssignedIdentities: {
          '${pullIdentity.id}': {}
        }
      }
    : {
        type: 'None'
      }
  dependsOn: [
    containers
    acrPull
  ]
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: externalIngress
        targetPort: targetPort
        transport: 'auto'
        allowInsecure: false
      }
      registries: usesRegistry
        ? [
            {
              server: registry.properties.loginServer
              identity: pullIdentity.id
            }
          ]
        : []
      secrets: [
        {
          name: 'cosmos-key'
          value: cosmos.listKeys().primaryMasterKey
        }
        {
          name: 'admin-token'
          value: adminToken
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'coordinator'
          image: containerImage
          // The image's command: fleet-coordinator serve --host 0.0.0.0 --port 8787
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: [
            {
              name: 'FLEET_STORE_URL'
              value: 'cosmos://'
            }
            {
              name: 'FLEET_COSMOS_ENDPOINT'
              value: cosmos.properties.documentEndpoint
            }
            {
              name: 'FLEET_COSMOS_KEY'
              secretRef: 'cosmos-key'
            }
            {
              name: 'FLEET_COSMOS_DATABASE'
              value: cosmosDatabaseName
            }
            {
              name: 'FLEET_ADMIN_TOKEN'
              secretRef: 'admin-token'
            }
            {
              name: 'FLEET_DEFAULT_LEASE_SECONDS'
              value: string(defaultLeaseSeconds)
            }
            {
              name: 'FLEET_REAPER_INTERVAL_SECONDS'
              value: string(reaperIntervalSeconds)
            }
            {
              name: 'FLEET_JOB_SHARDS'
              value: string(jobShards)
            }
          ]
          probes: [
            {
              // Up to 60 s for the first answer (opening the Cosmos client, declaring containers).
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              periodSeconds: 3
              timeoutSeconds: 2
              failureThreshold: 20
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
            {
              // /readyz pings Cosmos DB: a replica that cannot reach the store gets no traffic.
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: targetPort
              }
              periodSeconds: 5
              timeoutSeconds: 3
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        // CPU, not HTTP concurrency: long-polling claims hold requests open while idle.
        rules: [
          {
            name: 'cpu'
            custom: {
              type: 'cpu'
              metadata: {
                type: 'Utilization'
                value: '70'
              }
            }
          }
        ]
      }
    }
  }
}

@description('The coordinator base URL.')
output coordinatorUrl string = 'https://${coordinator.properties.configuration.ingress.fqdn}'

@description('The Cosmos DB endpoint (FLEET_COSMOS_ENDPOINT).')
output cosmosEndpoint string = cosmos.properties.documentEndpoint

@description('The Cosmos DB account name.')
output cosmosAccountName string = cosmos.name
