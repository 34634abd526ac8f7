import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0009_message_parent_tree'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='conversation',
            name='api_key_name',
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AddField(
            model_name='conversation',
            name='source',
            field=models.CharField(choices=[('chat', 'Chat'), ('api', 'API')], default='chat', max_length=8),
        ),
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('prefix', models.CharField(max_length=16)),
                ('digest', models.CharField(help_text='SHA-256 of the key, hex.', max_length=64, unique=True)),
                ('allowed_models', models.JSONField(blank=True, default=list)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AddField(
            model_name='conversation',
            name='api_key',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='conversations', to='chat.apikey'),
        ),
        migrations.AddIndex(
            model_name='conversation',
            index=models.Index(fields=['api_key', '-updated_at'], name='conversation_api_key_recent'),
        ),
        migrations.AddIndex(
            model_name='conversation',
            index=models.Index(fields=['source', '-updated_at'], name='conversation_source_recent'),
        ),
        migrations.AddIndex(
            model_name='apikey',
            index=models.Index(fields=['user', '-created_at'], name='api_key_user_recent'),
        ),
    ]
